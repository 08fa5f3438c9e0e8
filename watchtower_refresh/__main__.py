"""``python -m watchtower_refresh``: the same command as ``watchtower-refresh``."""

import sys

from ._cli import main

sys.exit(main())
