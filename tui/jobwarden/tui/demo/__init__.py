"""``jobwarden demo``: a whole jobwarden (engine, workers, a trickle of jobs) and its console.

``run_demo`` is what the command runs; ``Demo`` starts and stops the processes on its own (the
tests use it). The executors the demo workers run are in ``jobwarden.tui.demo.executors``.
"""

from jobwarden.tui.demo._demo import Demo, DemoError, run_demo

__all__ = ["Demo", "DemoError", "run_demo"]
