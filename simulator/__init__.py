"""A simulated Daydream Scope fleet: the embedded default for the demo and the harness's test double.

It speaks the Scope 0.2.4 HTTP contract (shared/design/scope-api.md), quirks included, and
nothing of the harness. Layout:

    profiles.py   behaviour profiles (healthy, slow, crash, stall, ...) as frozen pydantic models
    catalog.py    the pipelines and their schemas, frame rates and VRAM; config_schema.py their JSON Schema
    instance.py   one server's state: profile, faults, truth; advanced lazily from timestamps
    pipelines.py  load/status quirks     cloud.py  cloud connect     headless.py  sessions
    session.py    one session's clock    behaviour.py  how a profile shapes frames and metrics
    frames.py     procedural JPEG frames media.py  input clips and the MPEG-TS stream
    app.py, routes/   the ASGI app and its routes, /_sim/ ground truth included
    discovery.py, fleet.py, launch.py, server.py   the fleet, its discovery server, serving
    cli.py        `python -m simulator serve|fleet|profiles`
    testing.py    running_simulator / running_fleet for tests
"""
