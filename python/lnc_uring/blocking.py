"""The blocking flavour: the same classes and methods without ``await``, for scripts
and threads that have no event loop.

Every call that waits (connect, ``send``, ``flush``, ``poll``, admin requests) releases
the GIL while the Rust core waits, so other Python threads keep running; a ``Producer``
may be shared between threads.

    from lnc_uring.blocking import Producer, StandaloneConsumer, LanceClient
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

from lnc_uring import _native
from lnc_uring._common import (
    admin_args,
    admin_config_for,
    address_of,
    consumer_args,
    native_store_of,
    producer_args,
    retention_info,
    topic_arg,
    topic_info,
)
from lnc_uring.config import ClientConfig, ProducerConfig, SeekPosition, StandaloneConfig, TopicInfo
from lnc_uring.errors import TopicNotFoundError, validate_topic_name
from lnc_uring.offset import FileOffsetStore, OffsetStore
from lnc_uring.tlv import RecordType, TlvRecord

PollResult = _native.PollResult


def _run(value: Any) -> Any:
    """The result of a store method, which may be a coroutine (the seed's stores are
    async): run it on a private event loop."""
    if inspect.isawaitable(value):
        return asyncio.run(_await(value))
    return value


async def _await(value: Any) -> Any:
    return await value


class LanceClient:
    """Blocking admin client (same methods as :class:`lnc_uring.LanceClient`)."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        self._config = config or ClientConfig()
        self._core: _native.AdminCore | None = None
        self._topic_cache: dict[str, TopicInfo] = {}

    def connect(self) -> LanceClient:
        """Connects to the server."""
        if self._core is None:
            self._core = _native.AdminCore.connect(*admin_args(self._config))
        return self

    def close(self) -> None:
        """Closes the connection (idempotent)."""
        if self._core is not None:
            self._core.close()
            self._core = None

    def __enter__(self) -> LanceClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, name: str, *args: Any) -> Any:
        return self.connect()._core.call(name, args)  # type: ignore[union-attr]

    def _cache(self, info: TopicInfo) -> TopicInfo:
        if info.name:
            self._topic_cache[info.name] = info
        return info

    def create_topic(self, name: str) -> TopicInfo:
        """Creates the topic, or returns the existing one (idempotent)."""
        return self.ensure_topic(name)

    def create_topic_once(self, name: str) -> TopicInfo:
        """Creates the topic; raises ``TopicAlreadyExistsError`` if it exists."""
        validate_topic_name(name)
        return self._cache(topic_info(self._call("create_topic", name)))

    def ensure_topic(self, name: str, max_attempts: int = 20, base_backoff_ms: int = 500) -> TopicInfo:
        """Gets or creates a topic by name."""
        validate_topic_name(name)
        cached = self._topic_cache.get(name)
        if cached is not None:
            return cached
        return self._cache(topic_info(self._call("ensure_topic", name)))

    def ensure_topic_default(self, name: str) -> TopicInfo:
        return self.ensure_topic(name)

    def resolve_topic_id(self, name: str) -> int:
        return self.ensure_topic(name).id

    def delete_topic(self, topic_id: int) -> None:
        """Deletes a topic and its data."""
        self._call("delete_topic", topic_id)
        self._topic_cache = {k: v for k, v in self._topic_cache.items() if v.id != topic_id}

    def list_topics(self) -> list[TopicInfo]:
        """All topics."""
        return [self._cache(topic_info(t)) for t in self._call("list_topics")]

    def get_topic(self, topic_id: int) -> TopicInfo:
        """One topic by id."""
        return self._cache(topic_info(self._call("get_topic", topic_id)))

    def get_topic_by_name(self, name: str) -> TopicInfo:
        """One topic by name, never creating it."""
        validate_topic_name(name)
        topics = self.list_topics()
        for t in topics:
            if t.name == name:
                return t
        raise TopicNotFoundError(
            f"Lance topic '{name}' not found. Available topics: {[t.name for t in topics]}."
        )

    def set_retention(self, topic_id: int, max_age_secs: int = 0, max_bytes: int = 0) -> TopicInfo:
        """Sets a topic's retention (0: no limit on that axis)."""
        t = self._call("set_retention", topic_id, max_age_secs, max_bytes)
        name = next((n for n, v in self._topic_cache.items() if v.id == topic_id), "")
        return retention_info(topic_id, t, name)

    def create_topic_with_retention(self, name: str, max_age_secs: int = 0, max_bytes: int = 0) -> TopicInfo:
        """Creates a topic with a retention policy (0: no limit on that axis)."""
        validate_topic_name(name)
        return self._cache(topic_info(self._call("create_topic_with_retention", name, max_age_secs, max_bytes)))

    def ping(self) -> float:
        """Round trip of a keepalive, in seconds."""
        return self._call("ping")

    def subscribe(self, topic_id: int, start_offset: int, max_batch_bytes: int, consumer_id: int) -> dict[str, Any]:
        cid, start = self._call("subscribe", topic_id, start_offset, max_batch_bytes, consumer_id)
        return {"consumer_id": cid, "start_offset": start}

    def unsubscribe(self, topic_id: int, consumer_id: int) -> None:
        self._call("unsubscribe", topic_id, consumer_id)

    def commit_offset(self, topic_id: int, consumer_id: int, offset: int) -> dict[str, Any]:
        cid, off = self._call("commit_offset", topic_id, consumer_id, offset)
        return {"consumer_id": cid, "committed_offset": off}


class Producer:
    """Blocking producer (same methods as :class:`lnc_uring.Producer`); thread-safe."""

    def __init__(self, core: _native.ProducerCore, config: ProducerConfig, address: str) -> None:
        self._core = core
        self._config = config
        self._address = address
        self._topic_cache: dict[str, int] = {}

    @classmethod
    def connect(cls, address: str, config: ProducerConfig | None = None) -> Producer:
        cfg = config or ProducerConfig()
        return cls(_native.ProducerCore.connect(*producer_args(address, cfg)), cfg, address_of(address))

    @classmethod
    def connect_for_topic(
        cls, address: str, topic_name: str, config: ProducerConfig | None = None
    ) -> tuple[Producer, int]:
        validate_topic_name(topic_name)
        cfg = config or ProducerConfig()
        with LanceClient(admin_config_for(address, cfg.connect_timeout_s)) as client:
            tid = client.ensure_topic(topic_name).id
        producer = cls.connect(address, cfg)
        producer._topic_cache[topic_name] = tid
        return producer, tid

    def _topic_id(self, topic: str | int | None, topic_id: int | None) -> int:
        t = topic_arg(topic, topic_id)
        if isinstance(t, int):
            return t
        cached = self._topic_cache.get(t)
        if cached is None:
            with LanceClient(admin_config_for(self._address, self._config.connect_timeout_s)) as c:
                cached = c.ensure_topic(t).id
            self._topic_cache[t] = cached
        return cached

    def send(
        self,
        topic: str | int | None = None,
        data: bytes | bytearray | memoryview = b"",
        *,
        topic_id: int | None = None,
        record_type: int = RecordType.RAW_DATA,
    ) -> int:
        """Sends one record and blocks until it is acknowledged; returns its id."""
        return self._core.send_wait(self._topic_id(topic, topic_id), data, record_type)

    def send_async(
        self,
        topic: str | int | None = None,
        data: bytes | bytearray | memoryview = b"",
        *,
        topic_id: int | None = None,
        record_type: int = RecordType.RAW_DATA,
    ) -> int:
        """Queues one record; returns its id at once (failures: see ``flush``)."""
        tid = self._topic_id(topic, topic_id)
        while (rid := self._core.send_nowait(tid, data, record_type)) is None:
            self._core.room_wait()
        return rid

    def send_batch(
        self,
        topic: str | int | None = None,
        records: list[TlvRecord] | None = None,
        *,
        topic_id: int | None = None,
    ) -> int:
        """Sends records in order and blocks until all are acknowledged."""
        tid = self._topic_id(topic, topic_id)
        records = list(records or [])
        batch = self._core.batch_begin(tid)
        i = 0
        while (i := self._core.batch_push(batch, records, i)) < len(records):
            self._core.room_wait()
        return self._core.batch_wait(batch)

    def flush(self, timeout: float = 30.0) -> None:
        """Blocks until every record is acknowledged or failed (see the async flavour)."""
        self._core.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flushes and stops (idempotent)."""
        self._core.close(self._config.request_timeout_s if timeout is None else timeout)

    @property
    def closed(self) -> bool:
        return self._core.closed

    def stats(self) -> dict[str, Any]:
        return self._core.stats()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StandaloneConsumer:
    """Blocking consumer (same methods as :class:`lnc_uring.StandaloneConsumer`)."""

    def __init__(self, core: _native.ConsumerCore, config: StandaloneConfig, offset_store: Any) -> None:
        self._core = core
        self._config = config
        self._store = offset_store
        self._python_store = offset_store is not None and native_store_of(offset_store) is None
        self._last_commit = time.monotonic()

    @classmethod
    def connect(
        cls, address: str, config: StandaloneConfig, offset_store: OffsetStore | None = None
    ) -> StandaloneConsumer:
        if config.topic_name and config.topic_id == 0:
            with LanceClient(admin_config_for(address, config.connect_timeout_s)) as client:
                config.topic_id = client.ensure_topic(config.topic_name).id
        if offset_store is None and config.offset_dir is not None:
            offset_store = FileOffsetStore(config.offset_dir)
        if isinstance(offset_store, FileOffsetStore):
            offset_store.migrate(config.consumer_name, config.topic_id, config.topic_name)
        core = _native.ConsumerCore.connect(*consumer_args(address, config, native_store_of(offset_store)))
        consumer = cls(core, config, offset_store)
        if consumer._python_store:
            saved = _run(offset_store.load(config.consumer_name, config.topic_id, topic_name=config.topic_name))
            if saved is not None:
                core.seek(saved)
        return consumer

    def close(self) -> None:
        """Closes; with auto-commit on, first commits every record ``poll`` returned.
        Idempotent; leaving ``with`` calls it."""
        if self._core.closed:
            return
        if self._python_store and self._config.auto_commit_interval_s is not None:
            self.commit()
        self._core.close()

    def __enter__(self) -> StandaloneConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def current_offset(self) -> int:
        return self._core.current_offset

    @property
    def committed_offset(self) -> int | None:
        return self._core.committed_offset

    @property
    def topic_id(self) -> int:
        return self._core.topic_id

    @property
    def topic_name(self) -> str | None:
        return self._config.topic_name

    def poll(self, timeout: float | None = None) -> PollResult | None:
        """The next records, or ``None`` (see the async flavour for ``timeout``)."""
        if self._python_store and self._config.auto_commit_interval_s is not None:
            # Commits what earlier polls returned, never what this one returns.
            if time.monotonic() - self._last_commit >= self._config.auto_commit_interval_s:
                self.commit()
        return self._core.poll(timeout)

    def end_offset(self) -> int:
        """The end of the topic's log now."""
        return self._core.end_offset()

    def seek(self, offset: int) -> None:
        self._core.seek(offset)

    def seek_to(self, position: SeekPosition | tuple[str, int]) -> None:
        if isinstance(position, tuple) and position[0] == "offset":
            self.seek(position[1])
        elif position is SeekPosition.BEGINNING:
            self.rewind()
        elif position is SeekPosition.END:
            self.seek_to_end()
        else:
            raise ValueError(f"not a seek position: {position!r}")

    def skip_bad_record(self) -> int:
        """Moves past the damaged record the last ``poll`` raised; returns the new
        position (see the async flavour). (lnc-uring)"""
        return self._core.skip_bad_record()

    def rewind(self) -> None:
        self._core.rewind()

    def seek_to_end(self) -> None:
        self._core.seek_to_end()

    def commit(self) -> None:
        offset = self._core.commit()
        if self._python_store:
            _run(self._store.save(self._config.consumer_name, self.topic_id, offset, topic_name=self._config.topic_name))
        self._last_commit = time.monotonic()


__all__ = ["LanceClient", "Producer", "StandaloneConsumer", "PollResult"]
