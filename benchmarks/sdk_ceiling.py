"""The openai SDK's own request rate against the same instant fake (run by hand).

The ceiling any client built on the SDK can reach on this machine: N chat completions,
C in flight, one asyncio loop, no pytest and no plugin. Compares the SDK's default httpx
transport with its optional aiohttp transport (`pip install 'openai[aiohttp]'`; skipped
when aiohttp is missing) and a bare httpx POST. docs/benchmarks.md has the figures.

    python benchmarks/sdk_ceiling.py [--n 3000] [--concurrency 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
from client_throughput import start_instant_server
from openai import AsyncOpenAI

MESSAGES = [{"role": "user", "content": "classify this"}]


Sender = tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]


def _sender(mode: str, url: str) -> Sender | None:
    """(send one request, close the client), or None when the transport is not installed."""
    if mode == "bare httpx":
        http = httpx.AsyncClient(base_url=url)

        async def post() -> object:
            reply = await http.post("/chat/completions", json={"model": "fast", "messages": MESSAGES})
            return reply.json()

        return post, http.aclose
    if mode == "openai (aiohttp)":
        try:
            from openai import DefaultAioHttpClient

            client = AsyncOpenAI(api_key="x", base_url=url, max_retries=0, http_client=DefaultAioHttpClient())
        except (ImportError, RuntimeError):
            return None
    else:
        client = AsyncOpenAI(api_key="x", base_url=url, max_retries=0)

    async def create() -> object:
        return await client.chat.completions.create(
            model="fast",
            messages=MESSAGES,
            temperature=0.0,
            max_tokens=64,  # type: ignore[arg-type]
        )

    return create, client.close


async def _rate(send: Callable[[], Awaitable[object]], n: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await send()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - started)


async def _measure(mode: str, url: str, n: int, concurrency: int) -> float | None:
    sender = _sender(mode, url)
    if sender is None:
        return None
    send, close = sender
    try:
        return await _rate(send, n, concurrency)
    finally:
        await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    server, url = start_instant_server()
    try:
        for mode in ("openai (httpx, default)", "openai (aiohttp)", "bare httpx"):
            for _ in range(args.rounds):
                rate = asyncio.run(_measure(mode, url, args.n, args.concurrency))
                print(f"{mode:24} " + ("skipped: aiohttp not installed" if rate is None else f"{rate:6.0f} req/s"))
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
