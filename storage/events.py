"""The library's log: named stdlib loggers, one event and its fields a record.

jobarbiter configures no logging. Each area logs through
``logging.getLogger("jobarbiter.<area>")``, so the application's
``logging.basicConfig`` or dictConfig decides what is shown; left
unconfigured, Python shows warnings and errors only, on stderr. Per-job events
are at DEBUG, lifecycle events (an arbiter started or stopped) at INFO.

A record's message reads ``event key=value ...`` for plain logging. Its fields
also travel in ``extra``, with ``event`` the bare event name, so an
application that configures structlog's stdlib integration
(``ProcessorFormatter`` with ``ExtraAdder`` in its ``foreign_pre_chain``) gets
them as structured events.

A log call never raises: a broken handler (a closed stdout, say) must not kill
the actor that logged.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

# Attributes a LogRecord has of its own: a field of that name would clash.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _shown(value: object) -> str:
    text = str(value)
    return repr(value) if isinstance(value, str) and (" " in text or not text) else text


class EventLog:
    """Logs events with fields: ``log.warning("arbiter died", arbiter=0, pid=12)``."""

    __slots__ = ("logger",)

    def __init__(self, area: str) -> None:
        self.logger = logging.getLogger(f"jobarbiter.{area}")

    @property
    def debugging(self) -> bool:
        """Whether debug events are shown: a hot loop asks once, not per job."""
        return self.logger.isEnabledFor(logging.DEBUG)

    def debug(self, event: str, **fields: Any) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        if self.logger.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        if self.logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, fields)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        exc_info = fields.pop("exc_info", None)
        # Ids as their str, as they print: renderers would show UUID('...').
        fields = {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in fields.items()}
        extra = {(f"{k}_" if k in _RESERVED else k): v for k, v in fields.items()}
        extra["event"] = event
        line = " ".join([event, *(f"{k}={_shown(v)}" for k, v in fields.items())])
        try:
            self.logger.log(level, "%s", line, exc_info=exc_info, extra=extra, stacklevel=3)
        except Exception:
            pass  # see the module docstring: logging must not take us down


def last_line(text: str | None) -> str | None:
    """An error's final line, for a log line: a traceback's names the exception."""
    if text is None:
        return None
    lines = text.strip().splitlines()
    return lines[-1] if lines else text
