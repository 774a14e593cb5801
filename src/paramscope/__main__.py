"""``python -m paramscope``: the command line (:func:`paramscope.cli.main`) in a process of its own."""

import gc
import sys

# A process that reads one source and exits: the modules it imports (most of reading a small file) make objects
# that live until the end, and the collector's default, a pass every 700 new objects, walked them a dozen times
# for nothing (2 ms of 35). Every 10,000 here; the readers that build many objects pause it (paramscope.gcpause).
gc.set_threshold(10_000)

from paramscope.cli import main  # noqa: E402  (after the collector's setting, which its imports are to run under)

sys.exit(main())
