"""Many concurrent SSE chat streams against one URL; prints one JSON line.

Each of N clients starts at its own offset within the ramp (so the streams do
not move in lock-step), then opens streams back to back until the duration is
over. For every stream it records the time to first token: from just before
connecting until the first `data:` event arrives. Standard library only, so
the harness needs nothing installed for it.

Usage: streams.py URL MODEL --clients N --duration S [--ramp S] [--timeout S]
"""

import argparse
import asyncio
import json
import math
import os
import sys
import time
from urllib.parse import urlsplit


class Stats:
    def __init__(self):
        self.ttft = []
        self.ok = 0
        self.failed = 0
        self.errors = {}
        self.open = 0
        self.max_open = 0

    def fail(self, why):
        self.failed += 1
        self.errors[why] = self.errors.get(why, 0) + 1


async def read_chunked(reader, on_data):
    """Decodes a chunked body, handing each chunk to on_data; returns at the end."""
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise ConnectionError("eof inside chunked body")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return
        on_data(await reader.readexactly(size))
        await reader.readexactly(2)


async def one_stream(host, port, path, body, stats):
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Authorization: Bearer {os.environ.get('BENCH_KEY', 'sk-bench')}\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    stats.open += 1
    stats.max_open = max(stats.max_open, stats.open)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            return stats.fail(f"status {status.decode()}")
        seen = bytearray()
        first = []

        def on_data(data):
            if not first and b"data:" in data:
                first.append(time.perf_counter())
            seen.extend(data[-64:])

        if b"transfer-encoding: chunked" in head.lower():
            await read_chunked(reader, on_data)
        else:
            while data := await reader.read(65536):
                on_data(data)
        if not first or b"[DONE]" not in seen:
            return stats.fail("stream ended without [DONE]")
        stats.ok += 1
        stats.ttft.append(first[0] - started)
    finally:
        stats.open -= 1
        writer.close()


async def client(index, args, target, body, stats, deadline):
    await asyncio.sleep(index * args.ramp / args.clients)
    while time.perf_counter() < deadline:
        try:
            await asyncio.wait_for(one_stream(*target, body, stats), args.timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            stats.fail(type(e).__name__)
            await asyncio.sleep(0.05)  # a refused connection must not spin


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    rank = math.ceil(p / 100 * len(sorted_values)) - 1  # nearest rank
    return sorted_values[max(0, rank)]


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("model")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--ramp", type=float, default=3)
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    url = urlsplit(args.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("streams.py only targets loopback")
    target = (url.hostname, url.port or 80, url.path)
    body = json.dumps({
        "model": args.model,
        "stream": True,
        "messages": [{"role": "user", "content": "Stream a short answer, please."}],
    }).encode()
    stats = Stats()
    started = time.perf_counter()
    deadline = started + args.ramp + args.duration
    tasks = [client(i, args, target, body, stats, deadline) for i in range(args.clients)]
    await asyncio.wait_for(asyncio.gather(*tasks), args.ramp + args.duration + args.timeout + 5)
    elapsed = time.perf_counter() - started
    ttft = sorted(stats.ttft)
    us = lambda s: None if s is None else round(s * 1e6)
    print(json.dumps({
        "tool": "streams", "streams_ok": stats.ok, "streams_failed": stats.failed,
        "errors": stats.errors, "max_open": stats.max_open, "seconds": round(elapsed, 3),
        "ttft_p50_us": us(percentile(ttft, 50)), "ttft_p99_us": us(percentile(ttft, 99)),
    }))


if __name__ == "__main__":
    asyncio.run(main())
