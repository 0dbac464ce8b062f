"""The data-parallel task function keeps one workspace per worker thread, private to it."""

from __future__ import annotations

import pickle
import threading

import numpy as np

from harness.model import MLP
from harness.workloads.data_parallel import Microbatch, MicrobatchGrad, ThreadMicrobatchGrad


def make_task() -> tuple[MicrobatchGrad, MLP]:
    model = MLP((6, 4, 3))
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((32, 6)), rng.integers(0, 3, 32)
    return MicrobatchGrad(model, model.init(5), x, y, np.zeros((4, model.size)), 8), model


def test_each_thread_builds_its_own_workspace_once() -> None:
    """Catches a workspace shared between threads (their scratch would be overwritten mid-call,
    and on 3.13t its objects' reference counts contended) and one rebuilt per call."""
    assert isinstance(make_task()[0].for_this_thread(), ThreadMicrobatchGrad)
    task, _ = make_task()
    seen: dict[str, list[object]] = {}
    inputs: dict[str, tuple[np.ndarray, ...]] = {}

    def worker(name: str) -> None:
        for index in range(4):
            task(Microbatch(index, np.arange(index * 8, index * 8 + 8)))
            own = task.for_this_thread()
            seen.setdefault(name, []).append(own._work)
            inputs[name] = (own._x, own._y)

    threads = [threading.Thread(target=worker, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = seen["a"], seen["b"]
    assert all(w is a[0] for w in a) and all(w is b[0] for w in b) and a[0] is not b[0]
    assert a[0].weights[0][0] is not b[0].weights[0][0]  # private views ...
    assert np.shares_memory(a[0].weights[0][0], task.params)  # ... of the same parameters
    for mine, theirs, shared in zip(inputs["a"], inputs["b"], (task.x, task.y)):
        assert mine is not theirs and mine is not shared and mine.base is shared  # inputs too


def test_the_task_pickles_without_its_workspaces_and_computes_the_same() -> None:
    """A process worker receives the task by pickle: it must not carry (or fail on) the
    thread-local workspaces, and its copy must write the same gradient."""
    task, model = make_task()
    mb = Microbatch(2, np.arange(16, 24))
    loss = task(mb)
    copy = pickle.loads(pickle.dumps(task))
    assert not hasattr(copy._local, "fn")
    assert copy(mb) == loss
    want = model.loss_and_grad(task.params, task.x[16:24], task.y[16:24])[1]
    assert np.array_equal(copy.grads[2], want) and not copy.grads[[0, 1, 3]].any()
