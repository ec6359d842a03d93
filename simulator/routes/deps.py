"""Access to the instance behind a request."""

from __future__ import annotations

from fastapi import Request

from simulator.headless import Headless
from simulator.instance import ScopeInstance


def instance_of(request: Request) -> ScopeInstance:
    """The simulated server answering this request."""
    return request.app.state.instance


def headless_of(request: Request) -> Headless:
    """The headless-session controller of this request's server."""
    return request.app.state.headless
