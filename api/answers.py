"""How the API answers: JSON with the reference's content type and headers, and `{"error": ...}` refusals."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

JSON_MEDIA_TYPE = "application/json"  # the reference's Content-Type, without a charset
# The reference's read headers: the Explorer reads the API cross-origin from a browser.
READ_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=30, stale-while-revalidate=15"}
INTERNAL_ERROR = "internal error"


class ApiError(Exception):
    """A request the API refuses: its HTTP status and a message naming what was wrong (never the body)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def json_answer(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON answer with the reference's content type."""
    return JSONResponse(payload, status_code=status, headers=headers, media_type=JSON_MEDIA_TYPE)


def read_answer(payload: Any) -> JSONResponse:
    """A 200 JSON answer of a read endpoint, with the reference's CORS and cache headers."""
    return json_answer(payload, headers=READ_HEADERS)


def error_answer(status: int, message: str) -> JSONResponse:
    """A refusal: `{"error": message}` with `status`."""
    return json_answer({"error": message}, status=status)
