"""Run configuration: one frozen, validated dataclass shared by every workload and the CLI."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from harness import HarnessError
from harness.model import MLP

MODEL_PRESETS: dict[str, tuple[int, ...]] = {
    "tiny": (64, 32, 10),  # Python overhead dominates: many small NumPy calls
    "small": (256, 128, 10),
    "large": (784, 1024, 10),  # BLAS dominates: one matmul is most of the time
}
START_METHODS = ("fork", "forkserver", "spawn")
POLICIES = ("lock", "striped", "hogwild")
AUGMENTS = ("numpy", "python")
ORDERS = ("ordered", "unordered")
REDUCES = ("ordered", "allreduce")
MPI_OPTIONS = ("hosts", "hostfile", "threads_per_rank", "reduce")  # meaningful with strategy mpi only


def parse_widths(model: str) -> tuple[int, ...]:
    """A preset name or explicit widths such as `64-32-10` (input-hidden...-classes)."""
    if model in MODEL_PRESETS:
        return MODEL_PRESETS[model]
    try:
        widths = tuple(int(w) for w in model.split("-"))
    except ValueError:
        widths = ()
    if len(widths) < 2 or min(widths) < 1 or widths[-1] < 2:
        raise HarnessError(
            f"model={model!r} is not a preset ({', '.join(MODEL_PRESETS)}) nor widths like "
            "'64-32-10' (at least input and classes, every width >= 1, classes >= 2)")
    return widths


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise HarnessError(message)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    _require(value in allowed, f"{name}={value!r} is not one of: {', '.join(allowed)}")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything that defines one run; two equal configs give bitwise-equal training."""

    workload: str = "data-parallel"
    strategy: str = "serial"
    workers: int = 1
    model: str = "tiny"
    steps: int = 50
    seed: int = 0
    batch: int = 1024  # 16 microbatches of 64: see README on why not smaller
    microbatches: int = 16
    lr: float = 0.1
    momentum: float = 0.9
    train_samples: int = 8192
    test_samples: int = 1024
    start_method: str = "forkserver"
    data: str | None = None
    # async-sgd
    policy: str = "lock"
    updates: int = 100
    stripes: int | None = None
    probe: bool = False
    # loader
    augment: str = "numpy"
    order: str = "ordered"
    epochs: int = 1
    prefetch: int = 2
    # mpi
    hosts: str | None = None  # comma-separated, as mpiexec -hosts takes them
    hostfile: str | None = None
    threads_per_rank: int = 1
    reduce: str = "ordered"
    force: bool = False  # allow more workers than the machine's bound (harness.memory)

    def __post_init__(self) -> None:
        for name in ("workers", "steps", "batch", "microbatches", "updates", "epochs", "prefetch",
                     "threads_per_rank"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, f"{name}={value!r} must be an integer >= 1")
        # only data-parallel cuts its batch into microbatches; the others take any batch
        if self.workload == "data-parallel" and self.batch % self.microbatches:
            raise HarnessError(divide_message(self.batch, self.microbatches))
        _require(self.seed >= 0, f"seed={self.seed} must be >= 0")
        _require(math.isfinite(self.lr) and self.lr > 0, f"lr={self.lr} must be > 0 and finite")
        _require(math.isfinite(self.momentum) and 0 <= self.momentum < 1,
                 f"momentum={self.momentum} must be in [0, 1)")
        _require(self.train_samples >= self.batch,
                 f"train_samples={self.train_samples} must be >= batch={self.batch}")
        _require(self.test_samples >= 1, f"test_samples={self.test_samples} must be >= 1")
        _require(self.stripes is None or self.stripes >= 1, f"stripes={self.stripes} must be >= 1")
        _choice("start_method", self.start_method, START_METHODS)
        _choice("policy", self.policy, POLICIES)
        _choice("augment", self.augment, AUGMENTS)
        _choice("order", self.order, ORDERS)
        _choice("reduce", self.reduce, REDUCES)
        self._check_mpi_options()
        parse_widths(self.model)
        _require(self.stripes is None or self.stripes <= self.parameters,
                 f"stripes={self.stripes} is more than the {self.parameters} parameters of model={self.model!r}")

    def _check_mpi_options(self) -> None:
        _require(not (self.hosts and self.hostfile), "hosts and hostfile: give one of them, not both")
        for name in MPI_OPTIONS if self.strategy != "mpi" else ():
            value = getattr(self, name)
            _require(value == RunConfig.__dataclass_fields__[name].default,
                     f"{name}={value!r} applies to strategy 'mpi' only")

    def strategy_options(self) -> dict[str, object]:
        """Keyword options of the strategy's constructor: only mpi takes more than start_method."""
        if self.strategy != "mpi":
            return {"start_method": self.start_method}
        return {"start_method": self.start_method, "threads_per_rank": self.threads_per_rank,
                "reduce": self.reduce}

    @property
    def widths(self) -> tuple[int, ...]:
        return parse_widths(self.model)

    @property
    def parameters(self) -> int:
        """How many parameters the model has (a stripe holds at least one)."""
        return MLP(self.widths).size

    @property
    def microbatch_size(self) -> int:
        return self.batch // self.microbatches

    def as_dict(self) -> dict:
        return asdict(self)


def run_options(fields: Mapping[str, Any]) -> list[str]:
    """RunConfig fields as `python -m harness run` takes them: `--name value`, a bare `--name`
    for True (str of a float round-trips exactly)."""
    options: list[str] = []
    for key, value in fields.items():
        options.append("--" + key.replace("_", "-"))
        if value is not True:
            options.append(str(value))
    return options


def divide_message(batch: int, microbatches: int) -> str:
    """The nearest valid values, in O(log) of the sizes: never a list of every divisor (a batch
    of 10**12 would take hours to factor that way)."""
    below = batch - batch % microbatches
    batches = " or ".join(str(b) for b in (below, below + microbatches) if b >= 1)
    return (f"microbatches={microbatches} must divide batch={batch}: e.g. --batch {batches}, "
            f"or --microbatches {math.gcd(batch, microbatches)}")
