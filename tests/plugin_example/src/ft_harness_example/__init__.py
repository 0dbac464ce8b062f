"""Example ft-harness plug-ins (see the README's "Bring your own strategy, model or workload").

Each module registers one plug-in when imported; the distribution's entry points name them, so
installing it is enough. Nothing is registered by importing this package itself.
"""

__version__ = "0.1.0"
