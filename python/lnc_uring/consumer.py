"""``StandaloneConsumer`` (asyncio flavour): whole records, real lag, durable offsets.

Each poll runs on the consumer's one worker thread in the Rust core (GIL released) and
completes on the event loop. Differences from the seed client, where it was wrong:

* a record cut by a fetch boundary is completed by the next fetch (the seed dropped it
  and skipped past it);
* ``PollResult.lag`` is the bytes between the new position and the end of the log (the
  seed's was always 0);
* LZ4-compressed batches written by this package's producers are expanded;
* ``seek_to_end()`` goes to the real end of the log;
* ``auto_commit_interval_s`` commits (the seed ignored it);
* the id sent to the server is a stable hash of the consumer name (FNV-1a 64), the same
  in every process (the seed's was Python's per-process ``hash()``).

Cancelling a task awaiting ``poll`` keeps the records it fetched: the next ``poll``
returns them, and commits stop before them.

Commits (``auto_commit_interval_s``): a ``poll`` commits, when the interval has passed,
only the records returned before it — calling ``poll`` again is what says they were
processed; the records it returns are committed by a later poll, ``commit()``, or
``close()`` (also on leaving ``async with``), which commits every record returned. A
consumer dropped without ``close()`` commits only what was returned before its latest
poll.

A damaged record in the log (a header declaring a length no frame can carry) makes
``poll`` return the records before it, then raise
:class:`~lnc_uring.InvalidFrameError` with its ``offset``; ``skip_bad_record()`` moves
past it.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from lnc_uring import _aio, _native
from lnc_uring._common import admin_config_for, consumer_args, native_store_of
from lnc_uring.config import SeekPosition, StandaloneConfig
from lnc_uring.offset import FileOffsetStore, OffsetStore

PollResult = _native.PollResult


class StandaloneConsumer:
    """Async consumer of one topic with client-managed offsets.

    Create it with ``await StandaloneConsumer.connect(address, StandaloneConfig(...))``.
    """

    def __init__(
        self,
        core: _native.ConsumerCore,
        config: StandaloneConfig,
        offset_store: OffsetStore | None,
    ) -> None:
        self._core = core
        self._config = config
        self._store = offset_store
        # A store of the caller's own is driven from here; the package's stores by Rust.
        self._python_store = offset_store is not None and native_store_of(offset_store) is None
        self._last_commit = time.monotonic()

    @classmethod
    async def connect(
        cls,
        address: str,
        config: StandaloneConfig,
        offset_store: OffsetStore | None = None,
    ) -> StandaloneConsumer:
        """Connects and positions the consumer: at the stored offset when the store has
        one, else at ``config.start_position``. A ``topic_name`` is resolved (and the
        topic created if missing); ``config.topic_id`` is set to its id."""
        if config.topic_name and config.topic_id == 0:
            from lnc_uring.client import LanceClient

            async with LanceClient(admin_config_for(address, config.connect_timeout_s)) as client:
                config.topic_id = (await client.ensure_topic(config.topic_name)).id
        if offset_store is None and config.offset_dir is not None:
            offset_store = FileOffsetStore(config.offset_dir)
        if isinstance(offset_store, FileOffsetStore):
            offset_store.migrate(config.consumer_name, config.topic_id, config.topic_name)
        loop = asyncio.get_running_loop()
        args = consumer_args(address, config, native_store_of(offset_store))
        core = await loop.run_in_executor(None, partial(_native.ConsumerCore.connect, *args))
        consumer = cls(core, config, offset_store)
        if consumer._python_store:
            assert offset_store is not None
            saved = await offset_store.load(
                config.consumer_name, config.topic_id, topic_name=config.topic_name
            )
            if saved is not None:
                core.seek(saved)
        return consumer

    async def close(self) -> None:
        """Closes; with auto-commit on, first commits every record ``poll`` returned
        (those of a cancelled poll were never returned and are not committed).
        Idempotent; leaving ``async with`` calls it."""
        if self._core.closed:
            return
        if self._python_store and self._config.auto_commit_interval_s is not None:
            await self.commit()
        completer, fut = _aio.prepare()
        self._core.close_future(completer, fut)
        await fut

    async def __aenter__(self) -> StandaloneConsumer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def current_offset(self) -> int:
        """The offset of the next record to deliver."""
        return self._core.current_offset

    @property
    def committed_offset(self) -> int | None:
        """The last committed offset, if any."""
        return self._core.committed_offset

    @property
    def topic_id(self) -> int:
        return self._core.topic_id

    @property
    def topic_name(self) -> str | None:
        return self._config.topic_name

    async def poll(self, timeout: float | None = None) -> PollResult | None:
        """The next records, or ``None`` when nothing new has arrived.

        Without ``timeout`` this is one fetch round trip (the seed README's loop sleeps
        between empty polls). With ``timeout`` (seconds) it fetches every
        ``poll_interval_ms`` until records arrive or the time is up.
        """
        if self._python_store and self._config.auto_commit_interval_s is not None:
            # Polling again means the records returned so far were processed: commit
            # those (never the ones this poll returns).
            if time.monotonic() - self._last_commit >= self._config.auto_commit_interval_s:
                await self.commit()
        completer, fut = _aio.prepare()
        self._core.poll_future(completer, fut, timeout)
        return await fut

    def seek(self, offset: int) -> None:
        """Moves to byte offset ``offset`` (a record boundary: 0, or an offset a
        consumer reached or committed)."""
        self._core.seek(offset)

    def seek_to(self, position: SeekPosition | tuple[str, int]) -> None:
        """Moves to ``SeekPosition.BEGINNING``, ``SeekPosition.END`` or
        ``SeekPosition.offset(n)``."""
        if isinstance(position, tuple) and position[0] == "offset":
            self.seek(position[1])
        elif position is SeekPosition.BEGINNING:
            self.rewind()
        elif position is SeekPosition.END:
            self.seek_to_end()
        else:
            raise ValueError(f"not a seek position: {position!r}")

    async def skip_bad_record(self) -> int:
        """Moves past the damaged record the last ``poll`` raised (an
        :class:`~lnc_uring.InvalidFrameError` with ``offset``: the records before it were
        returned), trusting the length its header declares; returns the new position.
        If that length is absurd, ``seek`` to a known boundary or ``seek_to_end()``
        instead. (lnc-uring)"""
        completer, fut = _aio.prepare()
        self._core.skip_bad_record_future(completer, fut)
        return await fut

    def rewind(self) -> None:
        """Moves to the beginning (offset 0)."""
        self._core.rewind()

    def seek_to_end(self) -> None:
        """Moves to the end of the log (resolved when the next poll runs): only records
        produced afterwards are read."""
        self._core.seek_to_end()

    async def commit(self) -> None:
        """Commits the current position: to the offset store (if any) and, with a store
        of your own, through its ``save``."""
        completer, fut = _aio.prepare()
        self._core.commit_future(completer, fut)
        offset = await fut
        if self._python_store:
            assert self._store is not None
            await self._store.save(
                self._config.consumer_name, self.topic_id, offset, topic_name=self._config.topic_name
            )
        self._last_commit = time.monotonic()


__all__ = ["StandaloneConsumer", "PollResult"]
