"""The explorer's work pool: a few workers and a short queue; beyond it, "busy".

Every request that computes (a capture, a frame, a PNG, a report...) runs through
:meth:`WorkPool.run`: at most ``workers`` jobs run at once, in threads, and at most
``queue`` more wait for one.  A request that finds the pool full is answered at once
with 503 and ``Retry-After`` (:class:`Busy`) instead of piling up: under 16 clients
the answers stay fast and the memory held by jobs in flight stays bounded.  The
request's body is read before it queues, so a waiting request holds no thread.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, TypeVar

__all__ = ["WORKERS", "QUEUE", "MAX_WAIT_S", "WorkPool", "Busy"]

WORKERS = 2
"""Jobs run at once (captures also take turns on the state's compute lock)."""
QUEUE = 4
"""Jobs that may wait for a worker ..."""
MAX_WAIT_S = 0.15
"""... as long as the work ahead of a new one is likely done within this many seconds
(the average job's time so far x the jobs ahead / the workers): on a slow or busy
machine the queue is shorter, so a request that is let in is answered in time."""

T = TypeVar("T")


class Busy(Exception):
    """The pool and its queue are full (HTTP 503 with ``Retry-After``)."""

    def __init__(self, retry_after: int, pending: int):
        super().__init__(f"the server is busy ({pending} requests in progress or waiting); "
                         f"try again in {retry_after} s")
        self.retry_after = retry_after


class WorkPool:
    """``workers`` threads' worth of work at a time, at most ``queue`` waiting (for at
    most about ``max_wait`` seconds).  Call :meth:`run` from the event loop only (its
    counters are not locked: the loop is one thread)."""

    def __init__(self, workers: int = WORKERS, queue: int = QUEUE, max_wait: float = MAX_WAIT_S):
        import anyio
        if workers < 1 or queue < 0:
            raise ValueError(f"a work pool needs workers >= 1 and queue >= 0; got "
                             f"{workers} and {queue}")
        self.workers, self.queue, self.max_wait = workers, queue, max_wait
        self.limiter = anyio.CapacityLimiter(workers)
        self.pending = 0
        """Jobs running or waiting."""
        self.seconds = 0.05
        """A running average of one job's time: how ``Retry-After`` is estimated."""
        self.hook: Callable[[], Any] | None = None
        """Tests: called in the worker thread before each job (e.g. ``event.wait``), so
        that the pool can be filled with jobs that block until the test lets them go."""

    def wait_ahead(self) -> float:
        """The likely wait of a job let in now: the jobs ahead of it, on the workers."""
        return (self.pending - self.workers + 1) * self.seconds / self.workers

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue's work, at least 1."""
        return max(1, math.ceil(self.seconds * (self.pending + 1) / self.workers))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread; :class:`Busy` when the queue is full."""
        import anyio
        if self.pending >= self.workers and (
                self.pending >= self.workers + self.queue or self.wait_ahead() > self.max_wait):
            raise Busy(self.retry_after(), self.pending)
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(self._timed, fn, args, limiter=self.limiter)
        finally:
            self.pending -= 1

    def _timed(self, fn: Callable[..., T], args: tuple) -> T:
        hook = self.hook
        if hook is not None:
            hook()
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds = 0.8 * self.seconds + 0.2 * (time.perf_counter() - t0)

    @property
    def running(self) -> int:
        """Jobs holding a worker now."""
        return int(self.limiter.borrowed_tokens)

