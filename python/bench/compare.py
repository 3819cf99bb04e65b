"""lnc_uring against the seed client (lnc-client 0.2.9), side by side on one server.

Installs nothing. In a virtual environment of its own, install both packages, then run:

    python -m venv /tmp/bench && . /tmp/bench/bin/activate
    pip install ./python lnc-client==0.2.9
    python python/bench/compare.py

The server is this package's embedded Lance-compatible server, started as a separate
process on 127.0.0.1 (``python -m lnc_uring.testkit``), so neither client shares its
process. Three measurements per client, each bounded in time:

* throughput: ``await send_async(...)`` for every record, then ``await flush()``;
* acknowledged sends: sequential ``await send(...)``;
* read-back: a consumer reading a topic from the beginning until it has every record,
  once counting the records each poll delivers and once also reading every value in a
  Python loop (which costs about as much per record as this package's whole poll).
  The seed drops records cut by a fetch boundary and then misreads the rest: use a
  record size whose encoded length divides the fetch size (``--size 123``: 128-byte
  records, 1 MiB fetches) so that it reads correctly; otherwise the records it delivered
  are counted and the shortfall printed.

Prints records/s and the ratios; ``--json`` adds a machine-readable line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lnc_uring.testkit", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc


async def make_topic(mod, address: str, name: str) -> int:
    host, port = address.rsplit(":", 1)
    async with mod.LanceClient(mod.ClientConfig(host=host, port=int(port))) as c:
        return (await c.ensure_topic(name)).id


async def throughput(mod, address: str, topic: int, count: int, size: int, budget_s: float) -> dict:
    payload = b"x" * size
    producer = await mod.Producer.connect(address, mod.ProducerConfig())
    sent = 0
    start = time.perf_counter()
    deadline = start + budget_s
    while sent < count:
        await producer.send_async(topic, payload)
        sent += 1
        if sent % 1000 == 0 and time.perf_counter() > deadline:
            break
    await producer.flush(timeout=120.0)
    elapsed = time.perf_counter() - start
    await producer.close()
    return {"records": sent, "seconds": elapsed, "rate": sent / elapsed}


async def acked(mod, address: str, topic: int, count: int, size: int, budget_s: float) -> dict:
    payload = b"y" * size
    producer = await mod.Producer.connect(address, mod.ProducerConfig())
    await producer.send(topic, payload)  # warm-up
    sent = 0
    start = time.perf_counter()
    deadline = start + budget_s
    while sent < count and time.perf_counter() < deadline:
        await producer.send(topic, payload)
        sent += 1
    elapsed = time.perf_counter() - start
    await producer.close()
    return {"records": sent, "seconds": elapsed, "rate": sent / elapsed}


async def read_back(
    mod, address: str, topic: int, expect: int, fetch: int, budget_s: float, touch: bool
) -> dict:
    name = "bench-touch" if touch else "bench-count"
    cfg = mod.StandaloneConfig(consumer_name=name, topic_id=topic, max_fetch_bytes=fetch)
    consumer = await mod.StandaloneConsumer.connect(address, cfg)
    got = 0
    total_bytes = 0
    empty = 0
    start = time.perf_counter()
    deadline = start + budget_s
    while got < expect and time.perf_counter() < deadline:
        result = await consumer.poll()
        if result is None:
            empty += 1
            if empty > 20:
                break  # nothing more will come
            continue
        if touch:
            for record in result.records:
                total_bytes += len(record.value)
        got += len(result.records)
    elapsed = time.perf_counter() - start
    await consumer.close()
    return {"records": got, "bytes": total_bytes, "seconds": elapsed, "rate": got / elapsed}


async def fill(address: str, topic: int, count: int, size: int) -> None:
    import lnc_uring

    producer = await lnc_uring.Producer.connect(address, lnc_uring.ProducerConfig())
    payload = b"r" * size
    for _ in range(count):
        await producer.send_async(topic, payload)
    await producer.close(timeout=120.0)


def fmt(r: dict) -> str:
    return f"{r['rate']:>12,.0f} rec/s  ({r['records']:,} in {r['seconds']:.2f} s)"


async def run(args) -> dict:
    import lnc_client
    import lnc_uring

    clients = {"lnc_client 0.2.9": lnc_client, "lnc_uring": lnc_uring}
    port = free_port()
    server = start_server(port)
    address = f"127.0.0.1:{port}"
    results: dict = {}
    try:
        for label, mod in clients.items():
            slug = "seed" if mod is lnc_client else "ours"
            tp_topic = await make_topic(lnc_uring, address, f"bench-tp-{slug}")
            ack_topic = await make_topic(lnc_uring, address, f"bench-ack-{slug}")
            results[label] = {
                "throughput": await throughput(mod, address, tp_topic, args.count, args.size, args.budget),
                "acked": await acked(mod, address, ack_topic, args.acked, args.size, args.budget),
            }
        read_topic = await make_topic(lnc_uring, address, "bench-read")
        await fill(address, read_topic, args.read_count, args.size)
        for label, mod in clients.items():
            for key, touch in (("read_back", False), ("read_back_touch", True)):
                results[label][key] = await read_back(
                    mod, address, read_topic, args.read_count, args.fetch, args.budget, touch
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=200_000, help="records for the throughput run")
    p.add_argument("--acked", type=int, default=5_000, help="records for the acknowledged run")
    p.add_argument("--read-count", type=int, default=200_000, help="records to read back")
    p.add_argument("--size", type=int, default=100, help="record value size in bytes")
    p.add_argument("--fetch", type=int, default=1 << 20, help="max_fetch_bytes for both consumers")
    p.add_argument("--budget", type=float, default=8.0, help="time limit of each run, seconds")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    results = asyncio.run(run(args))
    seed, ours = results["lnc_client 0.2.9"], results["lnc_uring"]
    print(f"records of {args.size} bytes, server: embedded (separate process), {os.cpu_count()} CPUs")
    for key, title in (
        ("throughput", "send_async + flush"),
        ("acked", "acknowledged send"),
        ("read_back", "consumer read-back (records delivered, counted)"),
        ("read_back_touch", "consumer read-back, touching every value in Python"),
    ):
        ratio = ours[key]["rate"] / seed[key]["rate"] if seed[key]["rate"] else float("inf")
        print(f"{title}:")
        print(f"  lnc_client 0.2.9  {fmt(seed[key])}")
        print(f"  lnc_uring         {fmt(ours[key])}")
        print(f"  ratio             {ratio:,.1f}x")
    short = args.read_count - seed["read_back_touch"]["records"]
    if short > 0:
        print(f"note: the seed consumer delivered {short:,} fewer records than were written")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
