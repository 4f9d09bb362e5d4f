"""The one generation queue shared by the UI and the API: jobs run one at a time in arrival order."""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable
from typing import Any


class FIFOLock:
    """A lock that is granted in the order it was requested (threading.Lock makes no such promise)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inner = threading.Lock()
        self._waiters: collections.deque[threading.Event] = collections.deque()

    def acquire(self, blocking: bool = True) -> bool:
        with self._inner:
            if not self._waiters and self._lock.acquire(False):
                return True
            if not blocking:
                return False
            ticket = threading.Event()
            self._waiters.append(ticket)
        ticket.wait()
        return True

    def release(self) -> None:
        with self._inner:
            if self._waiters:
                # Hand the lock over directly to the next waiter: it stays held.
                self._waiters.popleft().set()
            else:
                self._lock.release()

    def pending(self) -> int:
        with self._inner:
            return len(self._waiters)

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> FIFOLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


queue_lock = FIFOLock()


def wrap_queued_call(func: Callable) -> Callable:
    """Run `func` holding the generation queue."""

    @functools.wraps(func)
    def f(*args, **kwargs):
        with queue_lock:
            return func(*args, **kwargs)

    return f


def run_job(job: str, func: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run one generation job: wait for its turn in the queue, track it in shared.state."""
    from modules import shared

    with queue_lock:
        shared.state.begin(job=job)
        try:
            return func(*args, **kwargs)
        finally:
            shared.state.end()
