"""The live stream's hub: a bounded buffer of recent items that subscribers read at their own pace.

The monitoring worker publishes event summaries and alerts into one ring buffer; each subscriber (an
open ``GET /api/v1/stream``) keeps only its position in it and is woken on its event loop when items
arrive. Nothing is queued per subscriber, so a slow client costs no memory and never holds up the
worker (or ingest): a client that falls a whole buffer behind is dropped, and may come back with
``Last-Event-ID`` (resumed when that id is still in the buffer, told ``reset`` when it is not).

Item ids are ``e<raw event id>`` and ``a<alert id>``: the store's ids, so a client may reconnect to
another service process and still resume. While no one has subscribed for ``keep_s`` the worker stops
publishing and the buffer is emptied, so that a later resume never skips what was not buffered.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

ItemType = str  # "event" | "alert"


def frame(item_id: str, item_type: str, body: Any) -> bytes:
    """One server-sent event (orjson writes no newline, so the data is one line)."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (item_id.encode(), item_type.encode(), orjson.dumps(body))


def comment(text: str) -> bytes:
    return b": " + text.replace("\n", " ").encode() + b"\n\n"


@dataclass(frozen=True, slots=True)
class StreamItem:
    seq: int  # position in this hub
    id: str
    type: ItemType
    namespaces: frozenset[str]
    body: dict[str, Any]
    encoded: bytes  # the frame as a caller who may see everything gets it


@dataclass(eq=False)
class Subscription:
    loop: asyncio.AbstractEventLoop
    position: int  # seq of the last item handed to this subscriber
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False


class StreamFull(Exception):
    """More subscribers than the hub takes."""


class StreamHub:
    def __init__(self, capacity: int = 2_000, *, keep_s: float = 300.0, max_subscribers: int = 500,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1:
            raise ValueError("the stream buffer needs room for at least one item")
        self.capacity = capacity
        self.keep_s = keep_s
        self.max_subscribers = max_subscribers
        self._clock = clock
        self._lock = threading.Lock()
        self._items: deque[StreamItem] = deque()
        self._by_id: dict[str, int] = {}
        self._next = 1
        self._subscribers: set[Subscription] = set()
        self._last_active = float("-inf")
        self.dropped = 0  # subscribers dropped for falling behind (for tests and logs)

    # -- the publishing side (the monitoring worker's thread) ----------------------------------------

    def wanted(self) -> bool:
        """Is anyone listening, or was anyone lately? When not, the buffer is emptied (see module doc)."""
        with self._lock:
            if self._subscribers or self._clock() - self._last_active <= self.keep_s:
                return True
            self._items.clear()
            self._by_id.clear()
            return False

    def publish(self, items: Iterable[tuple[str, ItemType, frozenset[str], dict[str, Any]]]) -> int:
        """Append ``(id, type, namespaces, body)`` items and wake the subscribers; returns how many."""
        with self._lock:
            count = 0
            for item_id, item_type, namespaces, body in items:
                if item_id in self._by_id:
                    continue  # published already (an alert seen twice)
                item = StreamItem(self._next, item_id, item_type, namespaces, body,
                                  frame(item_id, item_type, body))
                self._next += 1
                self._items.append(item)
                self._by_id[item_id] = item.seq
                if len(self._items) > self.capacity:
                    old = self._items.popleft()
                    self._by_id.pop(old.id, None)
                count += 1
            subscribers = list(self._subscribers) if count else []
        for subscription in subscribers:
            try:
                subscription.loop.call_soon_threadsafe(subscription.wake.set)
            except RuntimeError:  # its event loop is gone: the connection is over
                self.unsubscribe(subscription)
        return count

    # -- the subscribing side (the event loop) -------------------------------------------------------

    def subscribe(self, loop: asyncio.AbstractEventLoop, last_event_id: str | None = None
                  ) -> tuple[Subscription, bool]:
        """A new subscriber from now on, or just after ``last_event_id`` when the buffer still holds it.

        Returns the subscription and whether a resume was asked for and could not be honoured.
        """
        with self._lock:
            if len(self._subscribers) >= self.max_subscribers:
                raise StreamFull(f"the stream has its {self.max_subscribers} subscribers; try again later")
            position = self._next - 1
            lost = False
            if last_event_id:
                found = self._by_id.get(last_event_id)
                if found is None:
                    lost = True
                else:
                    position = found
            subscription = Subscription(loop, position)
            self._subscribers.add(subscription)
            self._last_active = self._clock()
        return subscription, lost

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            subscription.closed = True
            if subscription in self._subscribers:
                self._subscribers.discard(subscription)
                self._last_active = self._clock()

    def take(self, subscription: Subscription, limit: int = 500) -> list[StreamItem] | None:
        """Items after the subscriber's position (at most ``limit``); None when some of them were
        overwritten before it read them (it fell a whole buffer behind: drop it)."""
        with self._lock:
            first = self._items[0].seq if self._items else self._next
            if subscription.position < first - 1:
                self.dropped += 1
                return None
            start = subscription.position + 1 - first
            items = list(itertools.islice(self._items, start, start + limit))
            if items:
                subscription.position = items[-1].seq
            return items

    def id_at(self, seq: int) -> str | None:
        """The id of the item at ``seq`` while the buffer holds it."""
        with self._lock:
            first = self._items[0].seq if self._items else self._next
            return self._items[seq - first].id if first <= seq < self._next else None

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)
