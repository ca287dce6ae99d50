"""Connect storms: a bound on concurrent handshakes, and jitter to spread a burst (sans-I/O).

When a server restarts, thousands of clients on one hub lose their connection in the same
millisecond.  Reconnecting them all at once floods the server (and the process: thousands of TCP
and TLS handshakes at once).  The loop asks the :class:`HandshakeLimiter` before each handshake:

* at most ``max_concurrent`` handshakes are in flight (from :meth:`want`'s grant to
  :meth:`done`); the others wait, first come first served;
* a handshake asked for while the limiter is *busy* (another handshake is in flight, or others
  are already waiting) gets a random not-before time in ``[now, now + jitter)``, so a burst is
  spread over ``jitter`` seconds instead of arriving as a wall; a lone reconnect goes at once.

No clock and no threads: the loop passes ``now``, calls :meth:`poll` when :meth:`next_deadline`
is due or after :meth:`done`, and starts the handshakes it returns.

>>> lim = HandshakeLimiter(max_concurrent=2, jitter=0.0)
>>> [lim.want(k, now=0.0) for k in "abc"]
[True, False, False]
>>> lim.poll(now=0.0)
['b']
>>> lim.in_flight, lim.waiting
(2, 1)
>>> lim.done("a"); lim.poll(now=0.0)
['c']
"""

from __future__ import annotations

import heapq
import itertools
import random
from typing import Callable, Hashable

from .exceptions import ConfigurationError

__all__ = ["HandshakeLimiter"]


class HandshakeLimiter:
    """Grants handshake slots (see the module docstring).

    Args:
        max_concurrent: handshakes in flight at once.
        jitter: the spread (seconds) given to a handshake asked for while the limiter is busy.
        rand: the random source (``random.random``), replaceable in tests.
    """

    def __init__(
        self, max_concurrent: int = 64, jitter: float = 2.0, rand: Callable[[], float] = random.random
    ) -> None:
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ConfigurationError(f"max_concurrent must be a positive integer, got {max_concurrent!r}")
        if jitter < 0:
            raise ConfigurationError(f"jitter must be >= 0, got {jitter!r}")
        self.max_concurrent = max_concurrent
        self.jitter = float(jitter)
        self._rand = rand
        self._flight: set[Hashable] = set()
        # (not_before, sequence, key): FIFO among those due; a key withdrawn stays in the heap
        # and is skipped (lazy deletion: O(log n) per operation).
        self._heap: list[tuple[float, int, Hashable]] = []
        self._waiting: dict[Hashable, int] = {}
        self._seq = itertools.count()
        #: Handshakes granted so far, and the most ever in flight at once.
        self.granted = 0
        self.peak = 0

    @property
    def in_flight(self) -> int:
        return len(self._flight)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def want(self, key: Hashable, now: float) -> bool:
        """Ask for a slot for ``key``; True: start the handshake now (and call :meth:`done`
        later); False: it waits, :meth:`poll` will return ``key`` when its turn comes."""
        if key in self._flight:
            return True
        if key in self._waiting:
            return False
        if not self._waiting and not self._flight:
            self._grant(key)
            return True
        not_before = now + self.jitter * self._rand()
        seq = next(self._seq)
        self._waiting[key] = seq
        heapq.heappush(self._heap, (not_before, seq, key))
        return False

    def cancel(self, key: Hashable) -> None:
        """``key`` no longer wants a handshake (its client closed) or ended one: free its slot."""
        self._waiting.pop(key, None)
        self._flight.discard(key)

    def done(self, key: Hashable) -> None:
        """The handshake of ``key`` ended (succeeded or failed): its slot is free."""
        self._flight.discard(key)

    def poll(self, now: float) -> list[Hashable]:
        """The waiting keys whose turn has come (due, and a slot free), granted in order."""
        out: list[Hashable] = []
        heap = self._heap
        while heap and len(self._flight) < self.max_concurrent:
            not_before, seq, key = heap[0]
            if self._waiting.get(key) != seq:
                heapq.heappop(heap)  # withdrawn, or re-queued later
                continue
            if not_before > now:
                break
            heapq.heappop(heap)
            del self._waiting[key]
            self._grant(key)
            out.append(key)
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`poll` may grant something without a :meth:`done` first (None: nothing
        waits on time, only on a free slot or on nothing)."""
        heap = self._heap
        while heap and self._waiting.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        if not heap or len(self._flight) >= self.max_concurrent:
            return None
        return heap[0][0]

    def _grant(self, key: Hashable) -> None:
        self._flight.add(key)
        self.granted += 1
        if len(self._flight) > self.peak:
            self.peak = len(self._flight)

    def __repr__(self) -> str:
        return f"<HandshakeLimiter in_flight={self.in_flight}/{self.max_concurrent} waiting={self.waiting}>"
