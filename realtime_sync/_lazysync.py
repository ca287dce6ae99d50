"""Synchronisation objects that cost (almost) nothing until a thread waits on them.

A hub holds thousands of clients, and every client had its engine's condition and two events:
each ``threading.Condition`` allocates a ``deque`` for its waiters (about 600 bytes) and each
``threading.Event`` a condition of its own (about 1.2 KiB with its lock and dictionary), although
hardly anyone ever waits on an idle client.  These create the costly part on the first wait.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

__all__ = ["LazyCondition", "LazyEvent"]


class LazyCondition(threading.Condition):
    """A ``threading.Condition`` whose waiter queue is made by the first :meth:`wait`.

    ``notify`` and ``notify_all`` read an empty tuple as "no waiters" (they only iterate and
    test it); ``wait`` runs with the lock held, as does every notify, so the swap is safe.

    >>> cond = LazyCondition(threading.Lock())
    >>> with cond:
    ...     cond.notify_all()
    ...     cond.wait(0.001)
    False
    """

    _waiters: Any  # a deque once someone waited, an empty tuple before

    def __init__(self, lock: threading.Lock | threading.RLock | None = None) -> None:
        super().__init__(lock)
        self._waiters = ()

    def wait(self, timeout: float | None = None) -> bool:
        if not isinstance(self._waiters, collections.deque):
            self._waiters = collections.deque()
        return super().wait(timeout)


_making = threading.Lock()  # one for all: taken once per set() and per first wait()


class LazyEvent:
    """``threading.Event``'s ``set``/``is_set``/``wait``, with the real event made by the first
    :meth:`wait` that has to block.

    >>> e = LazyEvent()
    >>> e.is_set(), e.wait(0.001)
    (False, False)
    >>> e.set()
    >>> e.is_set(), e.wait()
    (True, True)
    """

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._flag = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with _making:
            self._flag = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        with _making:
            if self._flag:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)
