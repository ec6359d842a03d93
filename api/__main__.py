"""`python -m api`: serve the leaderboard API (see api.server)."""

from __future__ import annotations

import sys

from api.server import main

if __name__ == "__main__":
    sys.exit(main())
