"""Importable references: how job classes and factories reach an arbiter.

An arbiter is a fresh interpreter that never runs the user's main script (it
would redo whatever the script does at module level: open a file, bind a
port). So the code it needs travels by name and is imported there: a job
class as ``module:qualname`` (``reference``), a factory pickled (``portable``),
which names its function or class the same way and carries the arguments of
a ``functools.partial`` or the fields of an instance. Both refuse, with the
fix in the message, what an arbiter could not import.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pickle
from typing import Any


def reference(thing: object, what: str) -> str:
    """``module:qualname`` of a class or function that an arbiter can import."""
    module = getattr(thing, "__module__", None)
    qualname = getattr(thing, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(
            f"{what} {thing!r} must be a class or function defined at the top level "
            "of a module: arbiters import it by name"
        )
    if module == "__main__":
        raise TypeError(
            f"{what} {qualname} is defined in the script being run (__main__); arbiters "
            "import it by name and never run that script: move it into a module (for "
            "example myapp/jobs.py) and import it from there"
        )
    if "<locals>" in qualname:
        raise TypeError(
            f"{what} {module}.{qualname} is defined inside a function: define it at the "
            "top level of its module, so that arbiters can import it by name"
        )
    ref = f"{module}:{qualname}"
    try:
        found = resolve(ref)
    except Exception as exc:
        raise TypeError(f"{what} {ref} cannot be imported by name: {exc}") from exc
    if found is not thing:
        raise TypeError(
            f"{what} {thing!r}: importing {ref} gives another object ({found!r}); "
            "pass the class or function itself, defined at the top level of its module"
        )
    return ref


def resolve(ref: str) -> Any:
    """Import what ``reference`` named."""
    module, _, qualname = ref.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def portable(thing: object, what: str) -> bytes:
    """``thing`` (a function, a class, a partial of one, or an instance of an
    importable class) as bytes an arbiter can load; see ``load``."""
    code: Any = thing
    while isinstance(code, functools.partial):
        code = code.func
    if inspect.ismethod(code):
        code = code.__func__
    if not (isinstance(code, type) or inspect.isfunction(code) or inspect.isbuiltin(code)):
        code = type(code)  # an instance: its class must be importable
    reference(code, what)
    try:
        return pickle.dumps(thing)
    except Exception as exc:
        raise TypeError(f"{what} {thing!r} cannot be sent to an arbiter: {exc}") from exc


def load(data: bytes) -> Any:
    """What ``portable`` packed; imports its code by name."""
    return pickle.loads(data)
