"""`run --strategy mpi`: start the ranks under mpiexec, or run as one of them.

Outside an MPI job, `python -m harness run --strategy mpi --workers N ...` becomes the launcher:
it runs `mpiexec -n N [-hosts ...|-f HOSTFILE] <this python> -m harness run <the same options>`,
passes rank 0's output through, and owns the job's lifetime. Inside a job (launched that way, or
by a user's own `mpiexec -n N python -m harness run --strategy mpi ...`) each process is a rank:
it runs the workload and rank 0 prints the one result.

Failing fast, with no orphans:
- a rank that raises prints `error: rank R of N on HOST: ...` and calls MPI_Abort, as the other
  ranks would otherwise wait in their next collective forever (MPICH's mpiexec does not end a job
  when a rank merely exits non-zero); mpiexec then ends every rank and exits with the code;
- the launcher gives mpiexec GRACE_S after a rank's error line to end the job, then kills it;
  interrupted (Ctrl-C, SIGTERM), it stops mpiexec, which stops its ranks;
- killed with SIGKILL, the launcher can stop nothing: each rank on its host watches it (a pidfd)
  and kills itself, and mpiexec, seeing a rank die by a signal, ends all the others;
- once mpiexec is gone, the launcher removes the shared memory an aborted job left on this host
  (harness.mpi.segments).
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from harness import HarnessError
from harness.config import RunConfig, run_options
from harness.mpi.segments import remove_orphaned_segments, unlink_own_segments

LAUNCHER_ENV = "FT_HARNESS_MPI_LAUNCHER"  # "host:pid" of the launcher, for the ranks to watch
JOB_ENV = (
    "PMI_RANK",
    "PMIX_RANK",
    "OMPI_COMM_WORLD_RANK",
)  # set by MPICH, PMIx, Open MPI launchers
GRACE_S = 10.0  # after a rank reported an error, how long mpiexec may take to end the job
STOP_WAIT_S = 5.0  # how long mpiexec may take to stop its ranks after SIGTERM, before SIGKILL
SEGMENT_WAIT_S = 3.0  # how long a failed job's ranks may keep its shared memory mapped
ABORT_ECHO = "application called MPI_Abort("  # MPICH's echo of an abort the rank already explained
RANK_ERROR = re.compile(r"error: rank \d+ of \d+ on \S+: (?P<message>.*)")  # see run_rank


def run_mpi(
    config: RunConfig, given: dict[str, Any], show: Callable[[dict[str, Any]], None]
) -> int:
    """The `run` command for --strategy mpi: as a rank inside a job, else as the launcher.
    `given` holds the settings the user gave, for the ranks to parse exactly as we did."""
    if in_mpi_job():
        return run_rank(config, workers_given="workers" in given, show=show)
    return launch(config, run_options(given))


def in_mpi_job() -> bool:
    return any(name in os.environ for name in JOB_ENV)


# ---------------------------------------------------------------------------------- launcher side


def launch(config: RunConfig, argv: list[str]) -> int:
    """Run the job under mpiexec and return its exit status; mpiexec never outlives this call."""
    from strategies.mpi import Mpi, mpiexec_path

    ok, reason = Mpi.available()
    if not ok:
        raise HarnessError(f"strategy 'mpi' is not available here: {reason}")
    command = [
        str(mpiexec_path()),
        "-n",
        str(config.workers),
        *host_options(config),
        sys.executable,
        "-m",
        "harness",
        "run",
        *argv,
    ]
    started = time.time()
    job = Job(command, {**os.environ, LAUNCHER_ENV: f"{socket.gethostname()}:{os.getpid()}"})
    try:
        job.wait_failing_fast()
    finally:
        job.stop()
        if job.process.returncode != 0:  # an aborted job leaves its shared memory behind
            remove_orphaned_segments(started, wait=SEGMENT_WAIT_S)
    return job.finish()


def host_options(config: RunConfig) -> list[str]:
    """Hydra's options placing the ranks; none runs them all on this host."""
    if config.hosts:
        return ["-hosts", config.hosts]
    if config.hostfile:
        return ["-f", config.hostfile]
    return []


class Job:
    """mpiexec, in a session of its own (a terminal's Ctrl-C reaches only the launcher, which
    stops mpiexec in order), and the threads reading its output.

    stderr passes through as it comes. stdout is held until the end: on success it is rank 0's
    result; on failure mpiexec writes its banner about ranks ended by a signal there, which then
    belongs on stderr, and nowhere when the launcher stopped the job on purpose.
    """

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.failed, self.stopping = threading.Event(), threading.Event()
        self.stdout: list[str] = []
        self.readers = [
            threading.Thread(target=self._relay_stderr, daemon=True),
            threading.Thread(target=self._hold_stdout, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _hold_stdout(self) -> None:
        assert self.process.stdout is not None
        self.stdout.extend(self.process.stdout)

    def _relay_stderr(self) -> None:
        """Each distinct rank error once (every rank may meet the same bad input); the first
        one starts the grace period."""
        assert self.process.stderr is not None
        seen: set[str] = set()
        for line in self.process.stderr:
            error = RANK_ERROR.match(line)
            if error:
                self.failed.set()
            if self.stopping.is_set() or ABORT_ECHO in line or (error and error["message"] in seen):
                continue
            if error:
                seen.add(error["message"])
            sys.stderr.write(line)
            sys.stderr.flush()

    def wait_failing_fast(self) -> None:
        """Until mpiexec exits; once a rank has reported an error, GRACE_S at most."""
        while self.process.poll() is None and not self.failed.wait(0.2):
            pass
        try:
            self.process.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            pass  # stop() ends it

    def stop(self) -> None:
        """SIGTERM lets mpiexec stop its ranks; SIGKILL if it does not exit in time (its proxies
        then end the ranks as their connection to it drops)."""
        if self.process.poll() is not None:
            return
        self.stopping.set()
        self.process.terminate()
        try:
            self.process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def finish(self) -> int:
        """Write what stdout held where it belongs; the exit status, 128 + N for signal N."""
        for reader in self.readers:
            reader.join(STOP_WAIT_S)
        held = "".join(self.stdout)
        code = self.process.returncode
        if code == 0:
            sys.stdout.write(held)
        elif not self.stopping.is_set():
            sys.stderr.write(held)
            if not self.failed.is_set():  # a rank died without a word (a signal): say so last
                sys.stderr.write(f"error: the MPI job failed: mpiexec exited with status {code}\n")
        return code if code >= 0 else 128 - code


# -------------------------------------------------------------------------------------- rank side


def run_rank(
    config: RunConfig, *, workers_given: bool, show: Callable[[dict[str, Any]], None]
) -> int:
    """One rank: run the workload; rank 0 shows the result; any error aborts the whole job."""
    from harness.runner import execute
    from strategies.mpi import init_mpi

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # mpiexec ends ranks so; nothing to unwind here
    watch_launcher()
    mpi = init_mpi()
    comm = mpi.COMM_WORLD
    try:
        if not workers_given:  # `mpiexec -n N python -m harness run --strategy mpi`: N ranks
            config = config.replace(workers=comm.Get_size())
        result = execute(config)
        if comm.Get_rank() == 0:
            show(result)
            sys.stdout.flush()
    except BaseException as exc:  # noqa: B036  (SystemExit too: a rank must never leave silently)
        where = f"rank {comm.Get_rank()} of {comm.Get_size()} on {mpi.Get_processor_name()}"
        sys.stderr.write(rank_error(exc, where) + "\n")  # one write: ranks' lines interleave
        sys.stderr.flush()
        unlink_own_segments()  # MPI_Abort leaves the job's shared memory behind
        comm.Abort(exit_status(exc))
    return 0


def rank_error(exc: BaseException, where: str) -> str:
    """`error: <where>: ...`, after the traceback when the error is not the harness's own."""
    if isinstance(exc, HarnessError):
        return f"error: {where}: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return f"error: {where}: interrupted"
    trace = "".join(traceback.format_exception(exc))
    return f"{trace}error: {where}: {type(exc).__name__}: {exc}"


def exit_status(exc: BaseException) -> int:
    """As the CLI's: 2 for the harness's errors, 130 when interrupted, 1 otherwise."""
    if isinstance(exc, HarnessError):
        return 2
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def watch_launcher() -> None:
    """On the launcher's host, end this rank (by a signal, which mpiexec answers by ending the
    job) when the launcher ends: a launcher killed by SIGKILL could not stop mpiexec itself."""
    host, _, pid = os.environ.get(LAUNCHER_ENV, "").rpartition(":")
    if host != socket.gethostname() or not hasattr(os, "pidfd_open"):
        return  # ranks on other hosts: mpiexec's proxies end them when mpiexec goes
    try:
        pidfd = os.pidfd_open(int(pid))
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGKILL)
        return
    threading.Thread(target=kill_self_when_ready, args=(pidfd,), daemon=True).start()


def kill_self_when_ready(pidfd: int) -> None:
    select.select([pidfd], [], [])
    unlink_own_segments()  # nobody is left to remove the job's shared memory
    os.kill(os.getpid(), signal.SIGKILL)
