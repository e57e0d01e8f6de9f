"""The thread↔loop pipe: items from reader threads or tasks to one event loop, with bounded room."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

JOIN_SECONDS = 3.0


class _Waker:
    """Wakes one event loop for the pipes that got items: one `call_soon_threadsafe` for all
    the pipes that filled while the loop was busy, not one per item or per pipe (hundreds of
    followed logs each print a line now and then)."""

    _by_loop: dict[asyncio.AbstractEventLoop, _Waker] = {}
    _registry_lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[Pipe] = []
        self._scheduled = False

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Waker:
        with cls._registry_lock:
            waker = cls._by_loop.get(loop)
            if waker is None:
                for old in [old for old in cls._by_loop if old.is_closed()]:
                    del cls._by_loop[old]
                waker = cls._by_loop[loop] = cls(loop)
            return waker

    def wake(self, pipe: Pipe) -> bool:
        """From a thread: have `pipe` woken on the loop soon; False when the loop is closed."""
        with self._lock:
            self._pending.append(pipe)
            if self._scheduled:
                return True
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed: the server is shutting down
            with self._lock:
                self._scheduled = False
            return False
        return True

    def _run(self) -> None:
        with self._lock:
            pipes, self._pending = self._pending, []
            self._scheduled = False
        for pipe in pipes:
            pipe._wake()


class Pipe:
    """Items from threads or tasks to one event loop, with a bound on what may wait in between.

    `put` (from a thread) or `put_async` (from a task of the loop) takes a credit for a data
    item and waits while none is left; `get` (on the loop) gives the credit back once the
    consumer takes the item. Control items (a status, the end) pass without a credit so that
    they never wait behind data.

    The loop is woken once per batch, not once per item: a `put` while a wake-up is already on
    its way only adds to the queue, and one wake-up serves every pipe of the loop that got
    items meanwhile (each is a write to the loop's self-pipe and a turn of the loop; a flood,
    or hundreds of followed logs, would otherwise cost one per chunk).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._waker = _Waker.of(loop)
        self._items: deque[tuple[bool, Any]] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()  # for writers on the loop: a credit came back
        self._lock = threading.Lock()
        self._waking = False
        self._credits = threading.Semaphore(capacity)
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def put(self, item: Any, *, bounded: bool = True) -> bool:
        """From a thread; False once the pipe is closed (the reader should stop)."""
        if bounded:
            while not self._credits.acquire(timeout=0.25):
                if self._closed.is_set():
                    return False
        if self._closed.is_set():
            return False
        with self._lock:
            self._items.append((bounded, item))
            if self._waking:
                return True
            self._waking = True
        return self._waker.wake(self)

    async def put_async(self, item: Any) -> bool:
        """From a coroutine on the pipe's loop: a data item, waiting while no credit is left;
        False once the pipe is closed (the reader should stop)."""
        while not self._credits.acquire(blocking=False):
            if self._closed.is_set():
                return False
            self._room.clear()
            await self._room.wait()
        if self._closed.is_set():
            self._credits.release()
            return False
        self._items.append((True, item))
        self._ready.set()
        return True

    def put_nowait(self, item: Any) -> bool:
        """From the pipe's loop: a control item (a status), which needs no credit."""
        if self._closed.is_set():
            return False
        self._items.append((False, item))
        self._ready.set()
        return True

    def _wake(self) -> None:
        with self._lock:
            self._waking = False
        self._ready.set()

    def _take(self, entry: tuple[bool, Any]) -> Any:
        bounded, item = entry
        if bounded:
            self._credits.release()
            self._room.set()
        return item

    async def get(self) -> Any:
        while not self._items:
            self._ready.clear()
            if self._items:
                break
            await self._ready.wait()
        return self._take(self._items.popleft())

    async def wait_for_items(self, timeout: float) -> bool:
        """Wait, at most `timeout` seconds, until an item is waiting; True when one is."""
        if self._items:
            return True
        self._ready.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return bool(self._items)

    def get_nowait(self) -> Any:
        """Raises `asyncio.QueueEmpty` when nothing is waiting."""
        try:
            entry = self._items.popleft()
        except IndexError:
            raise asyncio.QueueEmpty from None
        return self._take(entry)

    def empty(self) -> bool:
        return not self._items

    def close(self) -> None:
        """From the loop: writers stop (a thread blocked in `put` within a quarter second, a
        coroutine in `put_async` at once)."""
        self._closed.set()
        self._room.set()

    def wait_closed(self, timeout: float) -> bool:
        """From a thread: sleep up to `timeout`, waking early when the pipe closes."""
        return self._closed.wait(timeout)


async def join_threads(threads: Iterable[threading.Thread], timeout: float = JOIN_SECONDS) -> list[threading.Thread]:
    """Wait (without blocking the loop) for the threads to end; returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = [thread for thread in threads if thread.is_alive()]
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        alive = [thread for thread in alive if thread.is_alive()]
    for thread in alive:
        logger.warning("stream thread %s did not stop within %.1f s", thread.name, timeout)
    return alive
