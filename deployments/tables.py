"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


def format_cell(value: object) -> str:
    """One cell: floats to 3 decimals, None as '-', timestamps to the second."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, tuple)):
        return ",".join(format_cell(v) for v in value) or "-"
    return str(value)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[object]], *, max_width: int = 60) -> str:
    """Columns aligned, a rule under the header, long cells cut with an ellipsis."""
    cells = [[_cut(format_cell(v), max_width) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
