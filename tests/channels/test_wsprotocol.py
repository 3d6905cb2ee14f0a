"""The pieces SocketProtocol puts in place of uvicorn's queue and event behave as those did."""

from __future__ import annotations

import asyncio

from realtime.channels.wsprotocol import Inbox, Writable


async def test_inbox_hands_messages_over_in_order_to_a_waiting_reader() -> None:
    """A reader waiting on an empty inbox gets what is put, in order; `empty` tells the truth."""
    inbox = Inbox()
    assert inbox.empty()
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    inbox.put_nowait({"n": 1})
    inbox.put_nowait({"n": 2})
    assert await reader == {"n": 1}
    assert not inbox.empty() and inbox.qsize() == 1
    assert await inbox.get() == {"n": 2}
    assert inbox.empty()


async def test_inbox_reader_cancelled_while_waiting_leaves_it_usable() -> None:
    """A reader cancelled while it waits loses nothing: the next one gets the next message."""
    inbox = Inbox()
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.sleep(0)
    inbox.put_nowait("after")
    assert await asyncio.wait_for(inbox.get(), 1) == "after"


async def test_writable_starts_set_and_wakes_its_waiters_when_set_again() -> None:
    """Set at first (no waiting); once cleared, waiters wait until it is set."""
    writable = Writable()
    assert writable.is_set()
    assert await asyncio.wait_for(writable.wait(), 1) is True
    writable.clear()
    waiters = [asyncio.ensure_future(writable.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    writable.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True]
