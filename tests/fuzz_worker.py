"""The fuzz test's worker: runs `python -m harness` command lines in-process, one per line of
stdin (a JSON list of arguments), under an address-space limit, and answers each with one JSON
line {"status": exit status, "stderr": what it printed}. In-process is ~50x faster than a new
interpreter per command line; tests/test_fuzz.py also runs a sample as real subprocesses.

Usage: python tests/fuzz_worker.py LIMIT_BYTES
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import traceback


def run_one(argv: list[str]) -> dict[str, object]:
    from harness.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse's exit, as the real command exits
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001  what the real command would print as a traceback
            traceback.print_exc()
            status = 1
    return {"status": status, "stderr": err.getvalue()}


def serve(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    answers = sys.stdout
    for line in sys.stdin:
        answers.write(json.dumps(run_one(json.loads(line))) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
