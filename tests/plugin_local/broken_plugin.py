"""A plug-in that fails to import (for the tests of that failure)."""

raise RuntimeError("this plug-in is broken on purpose")
