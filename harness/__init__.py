"""ft-harness: which way of parallelising NumPy training is fastest, and is it still correct?

This module imports nothing outside the standard library, so `python3 -m harness.toolchain`
works on a bare interpreter before any dependency is installed.
"""

__version__ = "0.1.0"


class HarnessError(Exception):
    """The one error type of the harness; the CLI prints it as `error: ...` and exits 2."""
