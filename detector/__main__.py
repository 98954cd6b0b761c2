"""``python -m detector``: the same as the ``skyreel-detector`` console script."""

from __future__ import annotations

import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main())
