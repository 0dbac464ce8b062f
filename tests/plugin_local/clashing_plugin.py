"""A plug-in registering a strategy under a name that is taken (for the tests of that failure)."""

from strategies.serial import Serial
from strategies.base import register


@register
class MyThreads(Serial):
    name = "threads"
