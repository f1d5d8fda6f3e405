"""Many open keep-alive connections, each sending one request every ``--interval`` seconds.

Opens ``--connections`` connections (``--open-rate`` a second, so no listen backlog
overflows; giving up after ``--open-timeout`` seconds with those it has), and only
then starts each on its own schedule: the first request at a random phase within
one interval, then one every interval (open loop per connection: an answer that
comes late does not move the schedule, the next request goes as soon as it is due
and the answer is in). Once every connection is open and one interval has passed
(every connection has sent), requests are measured for ``--seconds``. Prints one
JSON line: connections opened and lost, requests sent and answered in the window,
statuses, latency percentiles, the worst second.

Raw asyncio protocols on uvloop (an aiohttp client per connection would cost more
CPU than the server under test): a few tens of µs per request.

    python bench/manyconns.py --host 127.0.0.1 --port 8080 --connections 5000 \\
        --interval 2 --seconds 20 --header 'Authorization: Bearer ...'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import time
from collections import Counter

import uvloop


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.sent = 0
        self.answered = 0
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []  # seconds, answers to requests sent while measuring
        self.per_second: dict[int, float] = {}  # second of the window -> worst latency
        self.lost = 0  # connections closed by the server
        self.closing = False  # we close them all: not lost
        self.window_start = 0.0


class Client(asyncio.Protocol):
    def __init__(self, request: bytes, interval: float, stats: Stats) -> None:
        self.request = request
        self.interval = interval
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.sent_at = 0.0
        self.measured = False  # the request in flight was sent in the window
        self.due = 0.0
        self.in_flight = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def begin(self) -> None:
        """Every connection is open: the first request at a random phase."""
        self.due = self.loop.time() + random.random() * self.interval
        self.loop.call_at(self.due, self.send)

    def send(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.measured = self.stats.measuring
        if self.measured:
            self.stats.sent += 1
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        self.answer(int(head.split(" ", 2)[1]))

    def answer(self, status: int) -> None:
        latency = time.perf_counter() - self.sent_at
        self.in_flight = False
        stats = self.stats
        if self.measured:
            stats.answered += 1
            stats.statuses[status] += 1
            stats.latencies.append(latency)
            second = int(time.perf_counter() - stats.window_start)
            stats.per_second[second] = max(stats.per_second.get(second, 0.0), latency)
        self.due += self.interval
        self.loop.call_at(max(self.due, self.loop.time()), self.send)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.stats.closing:
            self.stats.lost += 1


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


async def run(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    headers = "".join(f"{h}\r\n" for h in args.header)
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n{headers}\r\n"
    ).encode()
    stats = Stats()
    clients: list[Client] = []
    failed = 0
    started = time.perf_counter()
    batch = max(1, args.open_rate // 20)
    give_up = loop.time() + args.open_timeout
    for start in range(0, args.connections, batch):
        if loop.time() > give_up:
            failed += args.connections - start
            break
        tick = loop.time()
        opening = []
        for _ in range(min(batch, args.connections - start)):
            client = Client(request, args.interval, stats)
            clients.append(client)
            opening.append(
                asyncio.wait_for(
                    loop.create_connection(lambda c=client: c, args.host, args.port),  # type: ignore[misc]
                    max(1.0, give_up - loop.time()),
                )
            )
        for result in await asyncio.gather(*opening, return_exceptions=True):
            if isinstance(result, BaseException):
                failed += 1
        await asyncio.sleep(max(0.0, tick + 0.05 - loop.time()))
    open_seconds = time.perf_counter() - started
    for client in clients:
        if client.transport is not None:
            client.begin()
    await asyncio.sleep(args.interval)  # every connection has sent once
    stats.measuring = True
    stats.window_start = time.perf_counter()
    await asyncio.sleep(args.seconds)
    stats.measuring = False
    # The last requests sent in the window: their answers, for a while.
    deadline = loop.time() + args.grace
    while loop.time() < deadline and any(c.in_flight and c.measured for c in clients):
        await asyncio.sleep(0.05)
    unanswered = sum(1 for c in clients if c.in_flight and c.measured)
    stats.closing = True
    for client in clients:
        if client.transport is not None:
            client.transport.abort()
    lat = sorted(stats.latencies)
    return {
        "connections": args.connections,
        "failed_to_open": failed,
        "open_seconds": round(open_seconds, 2),
        "lost": stats.lost,
        "window_s": args.seconds,
        "sent": stats.sent,
        "answered": stats.answered,
        "unanswered": unanswered,
        "statuses": {str(k): v for k, v in stats.statuses.items()},
        "rps": round(stats.answered / args.seconds, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
        "p999_ms": round(percentile(lat, 99.9) * 1000, 3),
        "max_ms": round((lat[-1] if lat else float("nan")) * 1000, 3),
        "worst_seconds_ms": sorted(
            (round(v * 1000, 1) for v in stats.per_second.values()), reverse=True
        )[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Many keep-alive connections, slow requests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between requests")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--open-rate", type=int, default=2000, help="connections opened a second")
    parser.add_argument("--grace", type=float, default=5.0, help="wait for the last answers")
    parser.add_argument(
        "--open-timeout", type=float, default=60.0, help="stop opening connections after this"
    )
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.connections + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(uvloop.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
