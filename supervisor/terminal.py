"""What every jobarbiter command shares: one-line errors, output to a pipe
that may close, and argument types."""

from __future__ import annotations

import argparse
import os
import sys

URL_VAR = "JOBARBITER_URL"
TOKEN_VAR = "JOBARBITER_TOKEN"


def fail(message: str, status: int) -> int:
    print(f"jobarbiter: {message}", file=sys.stderr)
    return status


def emit(text: str) -> bool:
    """Print to stdout; False if its reader went away (``jobarbiter demo | head -1``)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python flushes stdout again at exit, which would fail and print a
        # warning: point the descriptor at devnull instead.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "failed, without a word"


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        message = f"must be a whole number, at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
