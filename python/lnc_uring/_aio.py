"""Completing asyncio futures from Rust threads.

One ``_native.Completer`` per event loop: Rust driver and worker threads queue outcomes
in it without taking the GIL and wake the loop through a socket pair registered with
``loop.add_reader``; the loop resolves every queued future in one callback. No thread
per call, no polling.
"""

from __future__ import annotations

import asyncio
import weakref

from lnc_uring import _native

_completers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _native.Completer] = (
    weakref.WeakKeyDictionary()
)


def completer(loop: asyncio.AbstractEventLoop) -> _native.Completer:
    """The completion queue of ``loop`` (created and registered on first use)."""
    c = _completers.get(loop)
    if c is None:
        c = _native.Completer()
        loop.add_reader(c.fileno(), c.drain)
        _completers[loop] = c
    return c


def prepare() -> tuple[_native.Completer, asyncio.Future]:
    """The running loop's completer and a new future on that loop."""
    loop = asyncio.get_running_loop()
    return completer(loop), loop.create_future()
