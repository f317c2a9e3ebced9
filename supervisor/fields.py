"""Reading an HTTP request's input, for the JSON API and the dashboard alike.

``RequestError`` is a refusal with the status to answer it with (400 for bad
input unless said otherwise); each parser raises one naming the field and
what it was given. ``fields`` reads a POST's fields: its query string, then
its body, a JSON object or an ``application/x-www-form-urlencoded`` form (the
body's win).
"""

from __future__ import annotations

import contextlib
import json
import math
import urllib.parse
import uuid
from typing import Any

from starlette.requests import Request

from supervisor.operations import LISTED

__all__ = [
    "RequestError",
    "boolean",
    "fields",
    "integer",
    "job_id",
    "listed_status",
    "optional_str",
    "seconds",
]


class RequestError(Exception):
    """Answer the request with ``message`` and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def fields(request: Request) -> dict[str, Any]:
    """A POST's fields: its query string, then its JSON or form body."""
    found: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body.strip():
        return found
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RequestError(400, f"body is not JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise RequestError(400, "a JSON body must be an object")
        found.update(parsed)
    elif content_type == "application/x-www-form-urlencoded":
        try:
            found.update(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise RequestError(400, "form body is not UTF-8") from None
    else:
        raise RequestError(
            400, "a body must be application/json or application/x-www-form-urlencoded"
        )
    return found


def job_id(text: str, status: int = 400) -> uuid.UUID:
    """A job id; ``status`` is 404 where the id is part of a path."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise RequestError(status, f"not a job id: {text!r}") from None


def integer(value: object, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    raise RequestError(400, f"{name} must be an integer; got {value!r}")


def seconds(value: object, name: str) -> float:
    found: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        found = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            found = float(value)
    if found is None or not (math.isfinite(found) and found >= 0):
        raise RequestError(400, f"{name} must be a number of seconds >= 0; got {value!r}")
    return found


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def boolean(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise RequestError(400, f"{name} must be true or false; got {value!r}")


def optional_str(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raise RequestError(400, f"{name} must be a string; got {value!r}")


def listed_status(value: str | None) -> str | None:
    """A jobs listing's status filter: one of operations.LISTED, or None."""
    if not value:
        return None
    if value not in LISTED:
        raise RequestError(400, f"status must be one of {', '.join(LISTED)}; got {value!r}")
    return value
