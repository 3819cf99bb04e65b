"""Exceptions: the seed client's classes, raised for what the server really says.

Every class derives from :class:`LanceError`; ``is_retryable()`` tells whether trying
again (after a back-off) can succeed. Unlike the seed client, which expected JSON error
codes the released server never sends (so it raised a bare ``LanceError`` for
everything), these are raised from the crate's classification of the server's plain-text
errors: ``"Unknown topic"`` is a :class:`TopicNotFoundError`, ``"NOT_LEADER: redirect to
…"`` a :class:`NotLeaderError` with ``leader_addr``, ``"Rate limit exceeded"`` a
:class:`BackpressureError`, and so on.

Additions beyond the seed: :class:`ServerError` (any other server error, with its
retryability), :class:`ConfigError` (a setting that cannot work) and
:class:`DeliveryError` (records that failed with no caller to tell, reported by
``flush`` / ``close``).

How the Rust core's outcomes map (``native_kind`` names the core's variant):
``Stopped`` (the driver thread stopped), ``ConnectionDropped`` and ``Unreachable`` are
:class:`ConnectionError`; ``PeerTimeout`` is a :class:`TimeoutError`, and so is
``OutcomeUnknown`` (sent, never acknowledged, given up), with ``outcome_unknown`` set;
``CorruptRecord`` is an :class:`InvalidFrameError` with ``offset``; ``DeliveryFailed``
is a :class:`DeliveryError`.
"""

from __future__ import annotations

from lnc_uring import _native


class LanceError(Exception):
    """Base exception for all Lance client errors."""

    #: Set on exceptions raised from the Rust core: whether a retry can succeed.
    _retryable: bool | None = None
    #: The Rust core's error variant (``"Timeout"``, ``"Server"``, …) when it raised this.
    native_kind: str | None = None

    def is_retryable(self) -> bool:
        """Whether this error is transient and the operation can be retried.

        Retryable: ConnectionError, TimeoutError, BackpressureError,
        ServerCatchingUpError, NotLeaderError, and ServerError for forward failures,
        leader elections and replication errors.
        """
        if self._retryable is not None:
            return self._retryable
        return self._default_retryable()

    def _default_retryable(self) -> bool:
        return False


class ConnectionError(LanceError):
    """Connection-level errors (refused, closed, reset, dropped by the client, server
    unreachable, client closed, driver thread stopped). Those of a closed client or a
    stopped driver thread are not retryable: connect a new client."""

    def _default_retryable(self) -> bool:
        return True


class ProtocolError(LanceError):
    """Protocol-level errors (a malformed reply or record, a record too large)."""


class InvalidFrameError(ProtocolError):
    """CRC mismatch or malformed header; also a damaged record in the log, which a
    consumer's ``poll`` raises with ``offset`` (the record's byte offset) and
    ``reason`` set, after returning every record before it: ``skip_bad_record()`` moves
    past it, ``seek`` elsewhere."""

    #: Byte offset of the damaged record (a consumer's ``poll``), else ``None``.
    offset: int | None = None
    #: What is wrong with it.
    reason: str | None = None


class TimeoutError(LanceError):
    """Operation exceeded its deadline (connect, request, delivery, flush), or the
    server stopped answering (the connection is then dropped and made anew).

    ``outcome_unknown`` is true for a record that was sent and never acknowledged, then
    given up (after ``attempts`` sends; the reason is the ``__cause__``): the server
    may or may not have stored it.
    """

    #: Sent, never acknowledged, given up: it may or may not be stored.
    outcome_unknown: bool = False
    #: Times such a record was sent.
    attempts: int | None = None

    def _default_retryable(self) -> bool:
        return True


class BackpressureError(LanceError):
    """A buffer is full, or the server asked to slow down (rate limit)."""

    def _default_retryable(self) -> bool:
        return True


class ServerCatchingUpError(LanceError):
    """The requested offset is past the end of the log — back off and retry."""

    def __init__(self, server_offset: int = 0) -> None:
        super().__init__(f"Server catching up (at offset {server_offset})")
        self.server_offset = server_offset

    def _default_retryable(self) -> bool:
        return True


class TopicNotFoundError(LanceError):
    """The topic does not exist."""

    def __init__(self, topic_id: int | str) -> None:
        super().__init__(f"Topic not found: {topic_id}")
        self.topic_id = topic_id


class TopicAlreadyExistsError(LanceError):
    """A topic with this name already exists."""


class InvalidTopicNameError(LanceError, ValueError):
    """Topic name does not match ``[a-zA-Z0-9-]+``.

    Also a ``ValueError``, as the seed's ``config.validate_topic_name`` raised.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Invalid topic name: {name!r}. "
            "Names must contain only alphanumeric characters and dashes ([a-zA-Z0-9-])."
        )
        self.name = name


class NotLeaderError(LanceError):
    """This node is not the cluster leader (``leader_addr`` names it when known)."""

    def __init__(self, leader_addr: str | None = None) -> None:
        msg = "Not leader"
        if leader_addr:
            msg += f" — redirect to {leader_addr}"
        super().__init__(msg)
        self.leader_addr = leader_addr

    def _default_retryable(self) -> bool:
        return True


class AccessDeniedError(LanceError):
    """Authentication required or refused."""


class ServerError(LanceError):
    """Any other error the server reported (``FORWARD_FAILED: …``, ``I/O error: …``);
    ``is_retryable()`` follows the crate's classification of the text."""


class ConfigError(LanceError, ValueError):
    """A configuration that cannot work (also a ``ValueError``)."""


class DeliveryError(LanceError):
    """Records failed and no caller was told: records sent with ``send_async``, or sends
    whose awaiting task was cancelled. Raised by ``flush()`` and ``close()``.

    Every record gets exactly one outcome: a failure raised by the ``send`` /
    ``send_batch`` that awaited it is not raised again; every other failure is raised
    by the first ``flush()`` / ``close()`` that returns after it.

    ``failures`` lists ``(record_id, exception)`` pairs (record ids are what ``send`` /
    ``send_async`` returned); ``more`` counts failures beyond the first 1000;
    ``failed`` is the number of failed records and ``first`` the first failure (also
    the ``__cause__``). An error of the Rust core's ``DeliveryFailed`` kind raised
    elsewhere has ``failed`` and ``first`` and an empty ``failures`` list.
    """

    def __init__(
        self,
        failures: list[tuple[int, LanceError]] | None = None,
        more: int = 0,
        *,
        failed: int | None = None,
        first: LanceError | None = None,
    ) -> None:
        failures = list(failures or [])
        if first is None and failures:
            first = failures[0][1]
        n = len(failures) + more if failed is None else failed
        cause = f"; first failure: {first}" if first is not None else ""
        super().__init__(f"{n} record(s) were not delivered{cause}")
        self.failures = failures
        self.more = more
        self.failed = n
        self.first = first
        if first is not None:
            self.__cause__ = first

    def is_retryable(self) -> bool:
        """Whether sending those records again can succeed: every failure is
        retryable."""
        errors = [e for _, e in self.failures] or ([self.first] if self.first is not None else [])
        return bool(errors) and all(e.is_retryable() for e in errors)


def validate_topic_name(name: str) -> None:
    """Validate a topic name against the ``[a-zA-Z0-9-]+`` pattern.

    Raises :class:`InvalidTopicNameError` (also a ``ValueError``) if it is invalid.
    """
    if not isinstance(name, str) or _native.check_topic_name(name) is not None:
        raise InvalidTopicNameError(name)


__all__ = [
    "LanceError",
    "ConnectionError",
    "ProtocolError",
    "InvalidFrameError",
    "TimeoutError",
    "BackpressureError",
    "ServerCatchingUpError",
    "TopicNotFoundError",
    "TopicAlreadyExistsError",
    "InvalidTopicNameError",
    "NotLeaderError",
    "AccessDeniedError",
    "ServerError",
    "ConfigError",
    "DeliveryError",
    "validate_topic_name",
]
