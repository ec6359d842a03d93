"""`loadtest events audit --file F [--json]`: audit every session of a recorded Scope event stream.

The file is JSONL, one envelope per line (what Scope published to Kafka). Each session's kind is
inferred from its events (tasks/events/file_audit.py) and its findings printed; malformed lines
are reported on stderr with their numbers. Exit 0 when the file was read, whatever the findings
(they are results, not errors); 2 when it could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.events.file_audit import SessionAudit

Handler = Callable[[argparse.Namespace], int]
EXIT_OK, EXIT_UNREADABLE = 0, 2


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Register this module's subcommands; return their handlers by name."""
    events = sub.add_parser("events", help="Scope's lifecycle events")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    audit = events_sub.add_parser("audit", help="audit every session of a recorded event stream (JSONL)")
    audit.add_argument("--file", required=True, help="JSONL file, one Scope event envelope per line")
    audit.add_argument("--json", action="store_true", help="print one object per session as a JSON list")
    return {"events": cmd_events}


def cmd_events(args: argparse.Namespace) -> int:
    """Run the `events` subcommand named on the command line."""
    return cmd_events_audit(args)  # `audit` is the only one so far


def session_object(session: SessionAudit) -> dict[str, object]:
    """One session's audit as a JSON-ready object."""
    result = session.result
    return {
        "session_id": session.session_id, "kind": session.kind, "media_path": session.media_path,
        "webrtc": session.webrtc, "video_mode": session.video_mode, "offer_failed": session.offer_failed,
        "error_types": list(session.error_types), "connection_ids": list(session.connection_ids),
        "pipeline_ids": list(session.pipeline_ids), "events": session.events,
        "expected": list(result.expected), "seen_types": list(result.seen_types),
        "findings": [str(f) for f in result.findings], "complete": result.complete,
    }


def session_block(session: SessionAudit) -> str:
    """One session's audit as a few lines of text."""
    ids = ", ".join(session.connection_ids) or "none"
    lines = [f"session {session.session_id}: {session.kind}",
             f"  connection_id: {ids}; pipelines: {', '.join(session.pipeline_ids) or 'none'}"]
    if session.error_types:
        lines.append(f"  errors: {', '.join(session.error_types)}")
    lines.append(f"  events ({session.events}): {', '.join(session.result.seen_types)}")
    lines += [f"  {finding}" for finding in session.result.findings] or ["  complete"]
    return "\n".join(lines)


def cmd_events_audit(args: argparse.Namespace) -> int:
    """Print the audit of every session of the file; exit 2 only when it cannot be read."""
    from tasks.events.file_audit import audit_file, group_sessions
    from tasks.events.file_source import EventFileError, read_jsonl

    try:
        events, skipped = read_jsonl(args.file)
    except EventFileError as error:
        print(f"loadtest: events file unreadable: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    for line in skipped:
        print(f"{args.file}: line {line.line_number} skipped: {line.reason}", file=sys.stderr)
    sessions = audit_file(events)
    if args.json:
        print(json.dumps([session_object(s) for s in sessions], indent=1))
        return EXIT_OK
    unattached = len(group_sessions(events).unattached)
    print(f"{args.file}: {len(events)} event(s), {len(sessions)} session(s), {unattached} event(s) of no "
          f"session (pipeline load/unload), {len(skipped)} malformed line(s) skipped")
    for session in sessions:
        print()
        print(session_block(session))
    return EXIT_OK
