"""First uses of fresh tokens: each token is sent once, so each request takes the
miss path (Postgres lookup and an argon2 verification).

Reads raw tokens, one a line, from ``--tokens``. With ``--rate 0`` it sends them one
after the other (first-use latency); with ``--rate R`` it starts one every 1/R s on
its own schedule (open loop), whatever the answers take. Prints one JSON line:
``{"sent", "statuses", "latencies_ms"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

import aiohttp


async def one(session: aiohttp.ClientSession, url: str, token: str) -> tuple[int, float]:
    start = time.perf_counter()
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    return status, (time.perf_counter() - start) * 1000


async def run(url: str, tokens: list[str], rate: float, limit: float) -> dict[str, object]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if rate <= 0:
            results = [await one(session, url, token) for token in tokens]
        else:
            loop = asyncio.get_running_loop()
            start = loop.time()
            tasks = []
            for i, token in enumerate(tokens):
                due = start + i / rate
                if due - start > limit:
                    break
                await asyncio.sleep(max(0.0, due - loop.time()))
                tasks.append(asyncio.create_task(one(session, url, token)))
            results = list(await asyncio.gather(*tasks))
    return {
        "sent": len(results),
        "statuses": dict(Counter(str(status) for status, _ in results)),
        "latencies_ms": [round(ms, 3) for _, ms in results],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens", required=True, help="file with one raw token a line")
    parser.add_argument("--rate", type=float, default=0.0, help="first uses per second (0: serial)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop scheduling after this")
    args = parser.parse_args()
    with open(args.tokens) as f:
        tokens = [line.strip() for line in f if line.strip()]
    result = asyncio.run(run(args.url, tokens, args.rate, args.seconds))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
