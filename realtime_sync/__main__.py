"""``python -m realtime_sync``: the same as the ``realtime-sync`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
