"""A plug-in registering a strategy under a name that is taken (for the tests of that failure)."""

from strategies.base import register
from strategies.serial import Serial


@register
class MyThreads(Serial):
    name = "threads"
