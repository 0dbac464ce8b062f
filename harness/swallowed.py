"""An interrupt raised inside a finalizer is delivered again, not printed and lost.

A Python signal handler runs between two bytecodes of the main thread: also inside a weakref
callback or a __del__ that a garbage collection or a last reference started (multiprocessing's
Finalize objects, for one). An exception raised there cannot propagate: Python prints "Exception
ignored in ..." with a traceback and drops it, so the Ctrl-C is lost and the output is no longer
one line (seen once in a pyperf worker of an interrupted bench, cp313, CI). `redeliver` installs
a sys.unraisablehook that, for the given exception types, puts `handler` back on SIGINT if
nothing handles it now and has another thread ask for SIGINT again a moment later
(_thread.interrupt_main): asked from the hook itself, the handler would run inside the hook and
be lost the same way. Anything else goes to the hook that was there before.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

AGAIN_AFTER_S = 0.01  # the finalizer has long returned; the run has barely moved on


def redeliver(kinds: tuple[type[BaseException], ...], handler: Callable[..., Any]) -> None:
    """From now on, an exception of `kinds` swallowed by a finalizer is a SIGINT again."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, kinds):
            previous(unraisable)
            return
        try:
            if not callable(signal.getsignal(signal.SIGINT)):
                signal.signal(signal.SIGINT, handler)  # e.g. a handler that ignores a second one
        except ValueError:  # not the main thread: the handler in place takes it
            pass
        asker = threading.Timer(AGAIN_AFTER_S, _thread.interrupt_main, args=(signal.SIGINT,))
        asker.daemon = True
        asker.start()

    sys.unraisablehook = hook
