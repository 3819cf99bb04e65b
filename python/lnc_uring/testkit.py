"""The Rust core's embedded Lance-compatible server, for tests without a server.

    from lnc_uring.testkit import TestServer

    with TestServer() as server:          # 127.0.0.1, a free port
        producer = await Producer.connect(server.address, ProducerConfig())

It behaves like the released Lance server byte for byte (plain-text errors, raw-byte
fetches that may cut records, IEEE CRC-32) and can inject faults.
"""

from __future__ import annotations

from typing import Any

from lnc_uring import _native


class TestServer:
    """An embedded server listening on ``127.0.0.1:port`` (0: a free port)."""

    __test__ = False  # not a pytest test class

    def __init__(self, port: int = 0, *, ack_delay_ms: int = 0, discard_data: bool = False) -> None:
        self._server = _native.TestServer(port, ack_delay_ms, discard_data)

    @property
    def address(self) -> str:
        """``"127.0.0.1:<port>"``."""
        return self._server.address

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def running(self) -> bool:
        return self._server.running

    def create_topic(self, name: str) -> int:
        """Creates a topic directly on the server; returns its id."""
        return self._server.create_topic(name)

    def topic_bytes(self, topic_id: int) -> bytes:
        """Every byte the server stored for a topic."""
        return self._server.topic_bytes(topic_id)

    def topic_size(self, topic_id: int) -> int:
        return self._server.topic_size(topic_id)

    def reject_ingest(self, text: str, after: int = 0) -> None:
        """Refuse the next ingest (after ``after`` more) with the error ``text``."""
        self._server.reject_ingest(text, after)

    def pause_reads(self) -> None:
        """Stop reading from clients until :meth:`resume_reads`."""
        self._server.pause_reads()

    def resume_reads(self) -> None:
        self._server.resume_reads()

    def stats(self) -> dict[str, Any]:
        return self._server.stats()

    def stop(self) -> None:
        """Stops the server (idempotent)."""
        self._server.stop()

    def __enter__(self) -> TestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m lnc_uring.testkit [--port N]``: serve until interrupted."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="embedded Lance-compatible test server")
    parser.add_argument("--port", type=int, default=1992)
    args = parser.parse_args(argv)
    with TestServer(args.port) as server:
        print(f"listening on {server.address}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()


__all__ = ["TestServer"]
