"""A bounded set of recently seen ids, for dropping duplicate deliveries of the same event.

Memory only: after a restart a platform's redelivery may be processed again (platforms retry for minutes).
"""
from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """Remembers the last `capacity` ids.

    >>> seen = RecentIds(capacity=2)
    >>> seen.add('a'), seen.add('a'), seen.add('b'), seen.add('c'), seen.add('a')
    (True, False, True, True, True)
    """

    def __init__(self, capacity: int = 10000):
        if capacity < 1:
            raise ValueError(f'capacity must be >= 1, got {capacity}')
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def add(self, item: str) -> bool:
        """Record `item`; True if it was new (an empty id always counts as new)."""
        if not item:
            return True
        if item in self._ids:
            self._ids.move_to_end(item)
            return False
        self._ids[item] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True
