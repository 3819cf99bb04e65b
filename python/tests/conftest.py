"""Shared fixtures: an embedded server on 127.0.0.1 per test module, and a runner for
coroutines with a time bound."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from lnc_uring.testkit import TestServer

_names = itertools.count(1)


@pytest.fixture(scope="module")
def server():
    with TestServer() as s:
        yield s


@pytest.fixture
def topic_name() -> str:
    """A fresh topic name per test."""
    return f"t{next(_names)}"


def run(coro, timeout: float = 30.0):
    """Runs ``coro`` on a new event loop, failing after ``timeout`` seconds."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())
