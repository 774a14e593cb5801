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
    _import_argparse_in_english()
    from paramscope.cli import main  # after the setting, which its imports are to run under

    code = main()
    # Shutting down, the interpreter runs the collector over every object once more (3 ms of a small file's 30).
    # Frozen, they are left to the end of the process: the command closed what it wrote (an -o FILE, its
    # temporary files), and what modules still hold is released as before, by reference counts and atexit
    # handlers, not by a collection.
    gc.freeze()
    _exit(code)


def _exit(code: int) -> None:
    """End the process with ``code``; at once where the interpreter's shutdown has nothing left to do for it.

    After a command, shutting down flushes standard output and error, runs the atexit handlers, joins the threads
    that are not daemons, reports unclosed files where warnings are shown (-X dev, -W) and frees every module,
    object by object: 1 ms of a small file's run (issue 12), for memory the system takes back anyway. So where no
    handler is registered, no thread module was imported and no warning option is set, the two streams are flushed
    here and the process ends (os._exit); otherwise, or where a stream cannot be flushed (a closed pipe: the
    interpreter then says what it says of it), it shuts down as usual.
    """
    import atexit
    import os

    handlers = getattr(atexit, "_ncallbacks", None)  # CPython's count of registered handlers
    if handlers is None or handlers() or "threading" in sys.modules or sys.flags.dev_mode or sys.warnoptions:
        sys.exit(code)
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except Exception:
        sys.exit(code)
    os._exit(code)


def _import_argparse_in_english() -> None:
    """argparse imported without :mod:`gettext`, its words looked up as themselves (English).

    argparse takes ``gettext`` and ``ngettext`` from :mod:`gettext` at its import, and gettext's import compiles
    a regular expression for plural forms: 1 ms of a small file's 35 (issue 12), for lookups that in this process
    are made as written anyway (CPython ships no translations, and :func:`paramscope.commands.parse` swaps them
    for these same functions while it parses). So argparse is imported here, in the command's own process only,
    with a stand-in for gettext that is taken away at once: a later ``import gettext`` gets the real module. An
    argparse that wants more of gettext than these two is imported as usual.
    """
    if "argparse" in sys.modules or "gettext" in sys.modules:
        return
    import types

    from paramscope.text import as_written, as_written_plural

    stand_in = types.ModuleType("gettext", "argparse's lookups as written (paramscope.__main__)")
    stand_in.gettext = as_written  # type: ignore[attr-defined]
    stand_in.ngettext = as_written_plural  # type: ignore[attr-defined]
    sys.modules["gettext"] = stand_in
    try:
        import argparse  # noqa: F401  (kept in sys.modules with the stand-in's two functions)
    except ImportError:  # an argparse that takes more of gettext: the real one, below
        pass
    finally:
        del sys.modules["gettext"]


if __name__ == "__main__":
    console()
