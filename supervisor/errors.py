"""The exceptions a user of a Manager may catch; each message names the fix."""

from __future__ import annotations

from storage.events import last_line


class ManagerStopped(RuntimeError):  # noqa: N818 - the name says what happened
    """The Manager was stopped; every later call raises this."""

    def __init__(self, call: str) -> None:
        super().__init__(f"{call}() on a stopped Manager: start a new one with config.start()")


class CrashLoopError(RuntimeError):
    """Every arbiter keeps dying before it could run a job.

    ``errors`` holds each arbiter's last error (None where it died without
    saying why, killed by a signal say).
    """

    def __init__(self, errors: tuple[str | None, ...]) -> None:
        self.errors = errors
        known = sorted({line for e in errors if (line := last_line(e))})
        why = "; ".join(known) if known else "no error was reported (killed by a signal?)"
        super().__init__(
            f"every arbiter ({len(errors)}) is in a crash loop, dying at start-up: {why}"
        )
