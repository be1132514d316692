"""A one-item "latest frame wins" hand-over between two threads.

A producer that is faster than its consumer overwrites the item waiting in the slot instead of
queueing it, so the consumer always gets the newest frame, memory stays bounded and video never
turns into slow motion.  :meth:`LatestSlot.put` tells the caller when it overwrote an item, so the
caller can count the drop.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

__all__ = ["LatestSlot"]

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A bounded queue of size one where :meth:`put` replaces an item not yet taken."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False

    def put(self, item: T) -> bool:
        """Store ``item``; return True if it replaced (dropped) an item that was never taken."""
        with self._cond:
            dropped = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return dropped

    def empty(self) -> bool:
        """True when no item is waiting."""
        with self._cond:
            return not self._full

    def get(self, timeout: float) -> T | None:
        """The newest item, waiting at most ``timeout`` seconds; ``None`` on time-out or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._full or self._closed, timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Wake every waiting consumer; later :meth:`get` calls still drain a stored item."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
