import sys

from paramscope.cli import main

sys.exit(main())
