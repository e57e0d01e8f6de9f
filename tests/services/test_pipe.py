"""The pipe between stream readers (threads or tasks) and a consumer: bounded, lossless, closable."""

from __future__ import annotations

import asyncio
import threading

from services.streams.pipe import Pipe


async def test_a_task_waits_for_room_and_loses_nothing():
    pipe = Pipe(asyncio.get_running_loop(), 2)
    put: list[int] = []

    async def writer() -> None:
        for number in range(10):
            assert await pipe.put_async(number)
            put.append(number)

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.05)
    assert put == [0, 1]  # no credit left: the writer waits
    assert pipe.put_nowait("status")  # control items never wait
    taken = [await pipe.get() for _ in range(11)]
    await task
    assert taken == [0, 1, "status", *range(2, 10)]


async def test_closing_releases_a_waiting_task_and_refuses_more():
    pipe = Pipe(asyncio.get_running_loop(), 1)
    assert await pipe.put_async("first")
    waiting = asyncio.create_task(pipe.put_async("second"))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    pipe.close()
    assert await asyncio.wait_for(waiting, 1) is False
    assert pipe.put_nowait("late") is False


async def test_threads_and_tasks_share_one_pipe():
    pipe = Pipe(asyncio.get_running_loop(), 4)
    thread = threading.Thread(target=lambda: [pipe.put(("thread", n)) for n in range(50)])
    thread.start()

    async def task() -> None:
        for n in range(50):
            await pipe.put_async(("task", n))

    writer = asyncio.create_task(task())
    taken = [await pipe.get() for _ in range(100)]
    await writer
    thread.join(1)
    assert [n for who, n in taken if who == "thread"] == list(range(50))
    assert [n for who, n in taken if who == "task"] == list(range(50))


async def test_waiting_for_items_ends_when_one_comes_or_the_time_is_up():
    loop = asyncio.get_running_loop()
    pipe = Pipe(loop, 4)
    started = loop.time()
    assert await pipe.wait_for_items(0.05) is False
    assert loop.time() - started >= 0.04
    loop.call_later(0.02, pipe.put_nowait, "item")
    assert await pipe.wait_for_items(5) is True
    assert loop.time() - started < 1
