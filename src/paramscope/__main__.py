"""``python -m paramscope`` and the ``paramscope`` command: :func:`paramscope.cli.main` in a process of its own."""

import gc
import sys


def console() -> None:
    """Run the command line and exit with its code, the collector set for a process that reads one source."""
    # The modules this process imports (most of reading a small file) make objects that live until it ends, and
    # the collector's default, a pass every 700 new objects, walked them a dozen times for nothing (2 ms of 35).
    # Every 10,000 here; the readers that build many objects pause it (paramscope.gcpause).
    gc.set_threshold(10_000)
    from paramscope import gcpause

    gcpause.one_shot()  # a pause need not first walk what the imports made: it lives until the end anyway
    from paramscope.cli import main  # after the setting, which its imports are to run under

    code = main()
    # Shutting down, the interpreter runs the collector over every object once more (3 ms of a small file's 30).
    # Frozen, they are left to the end of the process: the command closed what it wrote (an -o FILE, its
    # temporary files), and what modules still hold is released as before, by reference counts and atexit
    # handlers, not by a collection.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console()
