"""Command line: `serve` one instance, run a `fleet`, list `profiles`.

    python -m simulator serve --port 8000 --profile stall --set fault_after_s=5
    python -m simulator fleet --instances 4 --orchestrators 6 --base-port 9100 --profiles healthy,stall
    python -m simulator profiles
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from simulator.fleet import FLEET_FILE_ENV, ORCH_URL_ENV, resolve_pinning, write_fleet_file
from simulator.launch import Launch, instance_binding, instance_rows, launch_fleet
from simulator.profiles import PROFILES, ProfileError, own_fields, profile_fields
from simulator.server import ServerGroup

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ProfileError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Simulated Daydream Scope fleet")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve one simulated Scope instance")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--profile", help="profile name (default: from the fleet file, else healthy)")
    serve.add_argument("--orchestrator-url", help=f"orchestrator to serve (default: ${ORCH_URL_ENV})")
    serve.add_argument("--fleet-file", help=f"fleet JSON mapping orchestrators to profiles (default: ${FLEET_FILE_ENV})")
    serve.add_argument("--assets-dir", type=Path, help="assets folder (default: a temporary one)")
    _common(serve)
    serve.set_defaults(handler=_serve)
    fleet = commands.add_parser("fleet", help="serve a discovery server and N instances in one process")
    fleet.add_argument("--instances", type=int, required=True)
    fleet.add_argument("--orchestrators", type=int, required=True)
    fleet.add_argument("--base-port", type=int, required=True, help="discovery port; instances on the next N")
    fleet.add_argument("--profiles", default="healthy", help="comma-separated, assigned round-robin to orchestrators")
    fleet.add_argument("--fleet-file", type=Path, help="where to write the fleet JSON (default: in the temp dir)")
    fleet.add_argument("--host", default="127.0.0.1")
    _common(fleet)
    fleet.set_defaults(handler=_fleet)
    commands.add_parser("profiles", help="list profiles and their fields").set_defaults(handler=_profiles)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a profile field")


def parse_overrides(pairs: Sequence[str]) -> dict:
    """`key=value` pairs; values are read as JSON when they parse (numbers, lists), else as text."""
    overrides = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            overrides[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key.strip()] = raw
    return overrides


def _serve(args: argparse.Namespace) -> int:
    pinning = resolve_pinning(
        args.orchestrator_url or os.environ.get(ORCH_URL_ENV), args.fleet_file or os.environ.get(FLEET_FILE_ENV)
    )
    profile = args.profile or pinning.profile or "healthy"
    launch = Launch()
    binding = instance_binding(
        launch, profile, {**pinning.overrides, **parse_overrides(args.set)}, host=args.host, port=args.port,
        seed=args.seed, orchestrator_url=pinning.orchestrator_url, orchestrator_address=pinning.orchestrator_address,
        assets_dir=args.assets_dir,
    )
    launch.instances.append((binding, None))
    _print_table("Scope simulator (Scope API 0.2.4)", [
        ("url", binding.url), ("profile", profile),
        ("orchestrator", pinning.orchestrator_url or "-"), ("address", pinning.orchestrator_address or "-"),
        ("assets", str(binding.instance.assets.root) if binding.instance else "-"),
    ])
    return _run(launch)


def _fleet(args: argparse.Namespace) -> int:
    profiles = [name.strip() for name in args.profiles.split(",") if name.strip()]
    if args.instances < 1 or args.orchestrators < 1:
        raise ValueError("--instances and --orchestrators must be at least 1")
    launch = launch_fleet(
        instances=args.instances, orchestrators=args.orchestrators, profiles=profiles, seed=args.seed,
        host=args.host, base_port=args.base_port, overrides=parse_overrides(args.set),
    )
    fleet_file = args.fleet_file or Path(tempfile.gettempdir()) / f"scope-sim-fleet-{args.base_port}.json"
    rows = instance_rows(launch)
    discovery_url = launch.discovery.url if launch.discovery else ""
    write_fleet_file(fleet_file, seed=args.seed, discovery_url=discovery_url, orchestrators=launch.orchestrators, instances=rows)
    _print_fleet(discovery_url, fleet_file, launch, rows)
    return _run(launch)


def _print_fleet(discovery_url: str, fleet_file: Path, launch: Launch, rows: list[dict]) -> None:
    _print_table("Scope simulator fleet", [("discovery", discovery_url), ("fleet file", str(fleet_file))])
    print(f"\n{'instance':<28} {'profile':<20} orchestrator")
    for row in rows:
        print(f"{row['url']:<28} {row['profile']:<20} {row['orchestrator_url']} ({row['orchestrator_address']})")
    print(f"\n{'orchestrator':<36} {'region':<13} {'profile':<20} {'scope':<6} capacity/in use")
    for o in launch.orchestrators:
        scope = "yes" if o.offers_scope else "no"
        print(f"{o.orch_uri:<36} {o.region:<13} {o.profile:<20} {scope:<6} {o.capacity}/{o.capacity_in_use}")
    print("\nCtrl-C or SIGTERM stops the fleet.", flush=True)


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    print(title)
    for key, value in rows:
        print(f"  {key:<14} {value}")
    print(flush=True)


def _run(launch: Launch) -> int:
    async def serve_until_signalled() -> None:
        group = ServerGroup(launch.bindings)
        group.install_signal_handlers()
        await group.serve()

    try:
        asyncio.run(serve_until_signalled())
    finally:
        launch.cleanup()
    print("stopped", flush=True)
    return 0


def _profiles(_args: argparse.Namespace) -> int:
    print("Fields of every profile (healthy defaults):")
    for key, value in profile_fields("healthy").items():
        print(f"  {key:<26} {value}")
    print("\nProfiles (fields that differ from healthy):")
    for name in PROFILES:
        doc = (PROFILES[name].__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<20} {doc}")
        for key, value in own_fields(name).items():
            print(f"      {key:<22} {value}")
    return 0
