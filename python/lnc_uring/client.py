"""``LanceClient``: topic administration (asyncio flavour).

Each call runs on the client's one worker thread in the Rust core (GIL released) and
completes its future on the event loop; the loop never blocks on the network.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from lnc_uring import _aio, _native
from lnc_uring._common import admin_args, retention_info, topic_info
from lnc_uring.config import ClientConfig, TopicInfo
from lnc_uring.errors import TopicNotFoundError, validate_topic_name


class LanceClient:
    """Async admin client: create, list, get, delete topics, set retention, ping.

    Use it as ``async with LanceClient(ClientConfig(host=…, port=…)) as client:``, or
    call ``await client.connect()`` (a call on an unconnected client connects first).
    """

    def __init__(self, config: ClientConfig | None = None) -> None:
        self._config = config or ClientConfig()
        self._core: _native.AdminCore | None = None
        self._topic_cache: dict[str, TopicInfo] = {}

    async def connect(self) -> LanceClient:
        """Connects to the server."""
        if self._core is None:
            loop = asyncio.get_running_loop()
            self._core = await loop.run_in_executor(
                None, partial(_native.AdminCore.connect, *admin_args(self._config))
            )
        return self

    async def close(self) -> None:
        """Closes the connection (idempotent)."""
        if self._core is not None:
            self._core.close()
            self._core = None

    async def __aenter__(self) -> LanceClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, name: str, *args: Any) -> Any:
        if self._core is None:
            await self.connect()
        assert self._core is not None
        completer, fut = _aio.prepare()
        self._core.call_future(completer, fut, name, args)
        return await fut

    def _cache(self, info: TopicInfo) -> TopicInfo:
        if info.name:
            self._topic_cache[info.name] = info
        return info

    # ----- topics -----

    async def create_topic(self, name: str) -> TopicInfo:
        """Creates the topic, or returns the existing one of that name (idempotent)."""
        return await self.ensure_topic(name)

    async def create_topic_once(self, name: str) -> TopicInfo:
        """Creates the topic; raises ``TopicAlreadyExistsError`` if it exists."""
        validate_topic_name(name)
        return self._cache(topic_info(await self._call("create_topic", name)))

    async def ensure_topic(self, name: str, max_attempts: int = 20, base_backoff_ms: int = 500) -> TopicInfo:
        """Gets or creates a topic by name. Retryable failures are retried by the Rust
        core until the request timeout (``max_attempts`` and ``base_backoff_ms`` are
        accepted for compatibility)."""
        validate_topic_name(name)
        cached = self._topic_cache.get(name)
        if cached is not None:
            return cached
        return self._cache(topic_info(await self._call("ensure_topic", name)))

    async def ensure_topic_default(self, name: str) -> TopicInfo:
        """``ensure_topic(name)``."""
        return await self.ensure_topic(name)

    async def resolve_topic_id(self, name: str) -> int:
        """The id of the topic ``name`` (created if missing)."""
        return (await self.ensure_topic(name)).id

    async def delete_topic(self, topic_id: int) -> None:
        """Deletes a topic and its data."""
        await self._call("delete_topic", topic_id)
        self._topic_cache = {k: v for k, v in self._topic_cache.items() if v.id != topic_id}

    async def list_topics(self) -> list[TopicInfo]:
        """All topics."""
        return [self._cache(topic_info(t)) for t in await self._call("list_topics")]

    async def get_topic(self, topic_id: int) -> TopicInfo:
        """One topic by id (``TopicNotFoundError`` if there is none)."""
        return self._cache(topic_info(await self._call("get_topic", topic_id)))

    async def get_topic_by_name(self, name: str) -> TopicInfo:
        """One topic by name, never creating it (``TopicNotFoundError`` if missing)."""
        validate_topic_name(name)
        topics = await self.list_topics()
        for t in topics:
            if t.name == name:
                return t
        raise TopicNotFoundError(
            f"Lance topic '{name}' not found. Available topics: {[t.name for t in topics]}."
        )

    async def set_retention(self, topic_id: int, max_age_secs: int = 0, max_bytes: int = 0) -> TopicInfo:
        """Sets a topic's retention; 0 means no limit on that axis (the server would read
        a literal 0 as "delete every closed segment")."""
        t = await self._call("set_retention", topic_id, max_age_secs, max_bytes)
        name = next((n for n, v in self._topic_cache.items() if v.id == topic_id), "")
        return retention_info(topic_id, t, name)

    async def create_topic_with_retention(
        self, name: str, max_age_secs: int = 0, max_bytes: int = 0
    ) -> TopicInfo:
        """Creates a topic with a retention policy (0: no limit on that axis)."""
        validate_topic_name(name)
        t = await self._call("create_topic_with_retention", name, max_age_secs, max_bytes)
        return self._cache(topic_info(t))

    # ----- diagnostics -----

    async def ping(self) -> float:
        """Round trip of a keepalive, in seconds."""
        return await self._call("ping")

    # ----- server-side consumer tracking (advisory; the server keeps it in memory) -----

    async def subscribe(
        self, topic_id: int, start_offset: int, max_batch_bytes: int, consumer_id: int
    ) -> dict[str, Any]:
        """Registers a consumer with the server: ``{"consumer_id", "start_offset"}`` as
        acknowledged (the seed returned ``{}``)."""
        cid, start = await self._call("subscribe", topic_id, start_offset, max_batch_bytes, consumer_id)
        return {"consumer_id": cid, "start_offset": start}

    async def unsubscribe(self, topic_id: int, consumer_id: int) -> None:
        """Removes a consumer's registration."""
        await self._call("unsubscribe", topic_id, consumer_id)

    async def commit_offset(self, topic_id: int, consumer_id: int, offset: int) -> dict[str, Any]:
        """Records a consumer's offset on the server: ``{"consumer_id",
        "committed_offset"}`` as acknowledged."""
        cid, off = await self._call("commit_offset", topic_id, consumer_id, offset)
        return {"consumer_id": cid, "committed_offset": off}


__all__ = ["LanceClient"]
