"""The leaderboard API: a drop-in replacement of livepeer/leaderboard-serverless's endpoints over our lake.

`create_app` builds the FastAPI app; `api.server` runs it under uvicorn (`loadtest api`, `python -m api`).
"""

from __future__ import annotations

from api.app import create_app

__all__ = ["create_app"]
