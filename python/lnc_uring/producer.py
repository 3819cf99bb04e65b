"""``Producer`` (asyncio flavour): batched, pipelined, acknowledged sends.

* ``await send(...)`` returns once the server acknowledged the record (one round trip:
  the batch is sent at once, not after ``linger_ms``).
* ``await send_async(...)`` queues the record into the current batch and returns at
  once; batches go out when full, after ``linger_ms``, or on ``flush()``. A record that
  fails later is reported by the next ``flush()`` or ``close()`` as a
  :class:`~lnc_uring.DeliveryError` (the seed lost such failures silently).
* Both return the record's id: 1, 2, 3… per producer, one per call — the numbers the
  seed returned as batch ids (it sent one batch per call).
* Cancelling a task that awaits ``send`` does not withdraw the record: it is still
  delivered, and if it fails, ``flush()`` / ``close()`` report it.
* Every record gets exactly one outcome, and the caller can always learn it: a failure
  is raised either by the ``send`` / ``send_batch`` that awaited the record, or (nobody
  awaited it) by the first ``flush()`` / ``close()`` that returns after it, as a
  :class:`~lnc_uring.DeliveryError` listing ``(record_id, exception)``. A record sent
  and never acknowledged, then given up, fails with ``TimeoutError`` whose
  ``outcome_unknown`` is true: the server may or may not have stored it.
* When ``buffer_memory`` is full, sends wait (asynchronously) for acknowledgements,
  also while the server is unreachable (pending records are acknowledged after a
  reconnect or fail within ``delivery_timeout_s``, which makes room).
* A producer garbage-collected without ``close()`` waits up to ``drop_timeout_s`` for
  its records, then fails them and writes what was lost to standard error.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from lnc_uring import _aio, _native
from lnc_uring._common import admin_config_for, address_of, producer_args, topic_arg
from lnc_uring.config import ProducerConfig
from lnc_uring.errors import validate_topic_name
from lnc_uring.tlv import RecordType, TlvRecord


class Producer:
    """Async producer. Create it with ``await Producer.connect(address, config)``."""

    def __init__(self, core: _native.ProducerCore, config: ProducerConfig, address: str) -> None:
        self._core = core
        self._config = config
        self._address = address
        self._topic_cache: dict[str, int] = {}

    @classmethod
    async def connect(cls, address: str, config: ProducerConfig | None = None) -> Producer:
        """Connects to ``"host:port"`` and starts the producer's driver thread."""
        cfg = config or ProducerConfig()
        loop = asyncio.get_running_loop()
        core = await loop.run_in_executor(
            None, partial(_native.ProducerCore.connect, *producer_args(address, cfg))
        )
        return cls(core, cfg, address_of(address))

    @classmethod
    async def connect_for_topic(
        cls, address: str, topic_name: str, config: ProducerConfig | None = None
    ) -> tuple[Producer, int]:
        """Resolves (or creates) ``topic_name`` and connects: ``(producer, topic_id)``."""
        validate_topic_name(topic_name)
        from lnc_uring.client import LanceClient

        cfg = config or ProducerConfig()
        async with LanceClient(admin_config_for(address, cfg.connect_timeout_s)) as client:
            topic = await client.ensure_topic(topic_name)
        producer = await cls.connect(address, cfg)
        producer._topic_cache[topic_name] = topic.id
        return producer, topic.id

    async def _topic_id(self, topic: str | int | None, topic_id: int | None) -> int:
        t = topic_arg(topic, topic_id)
        if isinstance(t, int):
            return t
        cached = self._topic_cache.get(t)
        if cached is None:
            from lnc_uring.client import LanceClient

            async with LanceClient(admin_config_for(self._address, self._config.connect_timeout_s)) as c:
                cached = (await c.ensure_topic(t)).id
            self._topic_cache[t] = cached
        return cached

    async def _room(self) -> None:
        completer, fut = _aio.prepare()
        self._core.room_future(completer, fut)
        await fut

    async def send(
        self,
        topic: str | int | None = None,
        data: bytes | bytearray | memoryview = b"",
        *,
        topic_id: int | None = None,
        record_type: int = RecordType.RAW_DATA,
    ) -> int:
        """Sends one record and waits for the server's acknowledgement; returns its id.

        ``topic`` is a name (resolved once, created if missing) or an id.
        """
        tid = await self._topic_id(topic, topic_id)
        completer, fut = _aio.prepare()
        while self._core.send_future(tid, data, record_type, completer, fut) is None:
            await self._room()
        return await fut

    async def send_async(
        self,
        topic: str | int | None = None,
        data: bytes | bytearray | memoryview = b"",
        *,
        topic_id: int | None = None,
        record_type: int = RecordType.RAW_DATA,
    ) -> int:
        """Queues one record without waiting for its acknowledgement; returns its id."""
        tid = await self._topic_id(topic, topic_id)
        while (rid := self._core.send_nowait(tid, data, record_type)) is None:
            await self._room()
        return rid

    async def send_batch(
        self,
        topic: str | int | None = None,
        records: list[TlvRecord] | None = None,
        *,
        topic_id: int | None = None,
    ) -> int:
        """Sends records in order and waits until all are acknowledged; returns the
        call's id. Raises the first failure."""
        tid = await self._topic_id(topic, topic_id)
        records = list(records or [])
        batch = self._core.batch_begin(tid)
        i = 0
        try:
            while (i := self._core.batch_push(batch, records, i)) < len(records):
                await self._room()
        except BaseException:
            self._core.batch_detach(batch)
            raise
        completer, fut = _aio.prepare()
        self._core.batch_future(batch, completer, fut)
        return await fut

    async def flush(self, timeout: float = 30.0) -> None:
        """Sends open batches and waits until every record sent before the call is
        acknowledged or failed.

        Raises ``DeliveryError`` when records failed that no caller was told about
        (``send_async``, cancelled sends), each failure once; ``TimeoutError`` if
        records are still unacknowledged after ``timeout`` seconds (their failures, if
        any, are raised by a later ``flush``/``close``); ``ConnectionError`` when the
        producer is closed or its driver thread stopped.
        """
        completer, fut = _aio.prepare()
        self._core.flush_future(completer, fut, timeout)
        await fut

    async def close(self, timeout: float | None = None) -> None:
        """Flushes (up to ``timeout``, default ``request_timeout_s``) and stops. Records
        still unacknowledged then fail (``TimeoutError`` with ``outcome_unknown`` for
        those sent). Raises ``DeliveryError`` for every failure no caller was told
        about, as ``flush`` does. Idempotent; leaving ``async with`` calls it."""
        if self._core.closed:
            return
        completer, fut = _aio.prepare()
        self._core.close_future(completer, fut, self._config.request_timeout_s if timeout is None else timeout)
        await fut

    @property
    def closed(self) -> bool:
        """Whether ``close`` ran."""
        return self._core.closed

    def stats(self) -> dict[str, Any]:
        """Counters of the Rust core (records, bytes, batches, outstanding, failed, ACK
        latency percentiles, I/O backend)."""
        return self._core.stats()

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["Producer"]
