"""Offset stores: where a consumer keeps its committed position.

:class:`MemoryOffsetStore` and :class:`FileOffsetStore` are the Rust core's stores. A
consumer given one of them (or ``offset_dir``) has its offsets saved by the Rust core on
``commit()``, on auto-commit and on close, off the event loop. A store of your own
(subclass :class:`OffsetStore`) is called from Python: ``load`` at connect, ``save`` on
each commit.

Differences from the seed client:

* Offsets are keyed by (consumer name, topic id).
* :class:`FileOffsetStore` writes ``<base_dir>/<consumer>/topic-<id>.offset`` crash-safely
  (temporary file, fsync, rename, directory fsync) and holds an exclusive lock per
  consumer name while the store lives, so two consumers cannot clobber one offset. It
  reads the seed's ``<consumer>_<topic>.offset`` JSON files in the same directory when it
  has no offset of its own, so a switched consumer resumes where the seed's stopped.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path

from lnc_uring import _native


class OffsetStore(ABC):
    """A place to keep committed offsets; subclass it for your own storage."""

    @abstractmethod
    async def load(self, consumer_name: str, topic_id: int, *, topic_name: str | None = None) -> int | None:
        """The last committed offset, or ``None``."""

    @abstractmethod
    async def save(
        self, consumer_name: str, topic_id: int, offset: int, *, topic_name: str | None = None
    ) -> None:
        """Keeps ``offset`` as the committed offset."""

    @abstractmethod
    async def delete(self, consumer_name: str, topic_id: int, *, topic_name: str | None = None) -> None:
        """Forgets the committed offset."""


class MemoryOffsetStore(OffsetStore):
    """Offsets in memory, lost when the process exits."""

    def __init__(self) -> None:
        self._native = _native.NativeMemoryOffsetStore()

    async def load(self, consumer_name: str, topic_id: int, *, topic_name: str | None = None) -> int | None:
        return self._native.load(consumer_name, topic_id)

    async def save(
        self, consumer_name: str, topic_id: int, offset: int, *, topic_name: str | None = None
    ) -> None:
        self._native.save(consumer_name, topic_id, offset)

    async def delete(self, consumer_name: str, topic_id: int, *, topic_name: str | None = None) -> None:
        self._native.delete(consumer_name, topic_id)


class FileOffsetStore(OffsetStore):
    """Durable offsets in files under ``base_dir`` (the Rust core's locked, crash-safe
    store). Direct calls block for a file sync; consumers call it off the event loop."""

    def __init__(self, base_dir: str | Path) -> None:
        self._base_dir = Path(base_dir)
        self._native = _native.NativeFileOffsetStore(str(self._base_dir))

    @property
    def base_dir(self) -> Path:
        """The directory."""
        return self._base_dir

    def _legacy(self, consumer_name: str, topic_id: int, topic_name: str | None) -> int | None:
        """The seed client's name-keyed file ``<consumer>_<topic_name>.offset``, if any.
        (Id-keyed seed files are read by the Rust core itself.)"""
        if not topic_name:
            return None
        safe = consumer_name.replace("/", "_").replace("\\", "_")
        path = self._base_dir / f"{safe}_{topic_name}.offset"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        offset = data.get("offset") if isinstance(data, dict) else None
        if not isinstance(offset, int) or offset < 0 or data.get("consumer", consumer_name) != consumer_name:
            raise ValueError(f"{path} is not a seed offset file of consumer {consumer_name!r}")
        return offset

    def load_sync(self, consumer_name: str, topic_id: int, *, topic_name: str | None = None) -> int | None:
        """``load`` without ``await``."""
        found = self._native.load(consumer_name, topic_id)
        if found is None:
            found = self._legacy(consumer_name, topic_id, topic_name)
        return found

    def migrate(self, consumer_name: str, topic_id: int, topic_name: str | None) -> None:
        """Copies a seed offset into this store if it has none (done at connect)."""
        if self._native.load(consumer_name, topic_id) is None:
            legacy = self._legacy(consumer_name, topic_id, topic_name)
            if legacy is not None:
                self._native.save(consumer_name, topic_id, legacy)

    async def load(self, consumer_name: str, topic_id: int, *, topic_name: str | None = None) -> int | None:
        return self.load_sync(consumer_name, topic_id, topic_name=topic_name)

    async def save(
        self, consumer_name: str, topic_id: int, offset: int, *, topic_name: str | None = None
    ) -> None:
        self._native.save(consumer_name, topic_id, offset)

    async def delete(self, consumer_name: str, topic_id: int, *, topic_name: str | None = None) -> None:
        self._native.delete(consumer_name, topic_id)


__all__ = ["OffsetStore", "MemoryOffsetStore", "FileOffsetStore"]
