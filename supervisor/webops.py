"""The operations as an HTTP handler calls them, for the JSON API and the
dashboard alike: on Starlette's thread pool (they block: a Manager asks its
actors, a storage queries its database), with the exceptions a caller can act
on turned into RequestErrors, and a page of jobs that knows whether another
follows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from storage import JobInfo
from supervisor.errors import ManagerStopped
from supervisor.fields import RequestError
from supervisor.operations import Operations

__all__ = ["call", "jobs_page"]

_T = TypeVar("_T")


async def call(func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``func`` on a worker thread. ManagerStopped answers 503,
    NotImplementedError 501, ValueError 400, LookupError 404 (not KeyError:
    a bug's, most likely, left to be a 500)."""
    try:
        return await run_in_threadpool(func, *args, **kwargs)
    except ManagerStopped as e:
        raise RequestError(503, str(e)) from None
    except NotImplementedError as e:
        raise RequestError(501, str(e) or "not supported by these operations") from None
    except ValueError as e:
        raise RequestError(400, str(e)) from None
    except LookupError as e:
        if isinstance(e, KeyError):
            raise
        raise RequestError(404, str(e)) from None


async def jobs_page(
    operations: Operations,
    *,
    queue: str | None,
    status: str | None,
    name: str | None,
    limit: int,
    after: uuid.UUID | None,
) -> tuple[list[JobInfo], uuid.UUID | None]:
    """Up to ``limit`` jobs from just past ``after``, and the ``after`` of the
    next page (None: this is the last). A keyset page: no OFFSET."""
    # One more than a page: whether another page follows is then known.
    found = await call(operations.jobs, queue, status, name=name, limit=limit + 1, after=after)
    page = found[:limit]
    return page, (page[-1].id if len(found) > limit else None)
