"""A light HTTP/1.1 load generator: pre-serialised bodies, keep-alive, asyncio streams (uvloop if present).

Run as its own process by :func:`bench.common.run_load` so its CPU use is visible and separate from the
server's (the two still share the machine's cores)::

    python -m bench.loadgen --port P --path /api/v1/lineage --bodies FILE --clients 8 --out result.json

Each of ``--clients`` connections sends the next unsent body, waits for the whole response, and repeats.
Requests carry the API key in ``CHAINTRACE_BENCH_API_KEY`` (an environment variable, not an argument,
so that it does not show in ``ps``) as ``Authorization: Bearer``.
The result file holds request/event counts, wall time, per-request latencies (ms), status counts and
this process's own CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from pathlib import Path


def _requests(path: str, port: int, bodies: list[bytes], api_key: str | None = None) -> list[bytes]:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    if api_key:
        head += f"Authorization: Bearer {api_key}\r\n"
    return [(head + f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        return status, await reader.readexactly(length)
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return status, b""


async def _main(args: argparse.Namespace, requests: list[bytes]) -> dict[str, object]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_index = 0
    errors: list[str] = []
    expect = {int(x) for x in args.expect.split(",") if x}
    deadline = float("inf")

    async def client() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port, limit=1 << 24)
        try:
            while True:
                i = next_index
                if i >= len(requests) or time.perf_counter() > deadline:
                    return
                next_index = i + 1
                t0 = time.perf_counter()
                try:
                    writer.write(requests[i])
                    status, body = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    statuses["error"] = statuses.get("error", 0) + 1
                    errors.append(repr(exc))
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", args.port, limit=1 << 24)
                    continue
                latencies.append((time.perf_counter() - t0) * 1000.0)
                key = str(status)
                statuses[key] = statuses.get(key, 0) + 1
                if status not in expect and len(errors) < 5:
                    errors.append(f"HTTP {status}: {body[:300]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    if args.max_seconds > 0:
        deadline = started + args.max_seconds
    await asyncio.gather(*(client() for _ in range(args.clients)))
    wall = time.perf_counter() - started
    ok = sum(n for s, n in statuses.items() if s.isdigit() and int(s) in expect)
    return {
        "requests": sum(statuses.values()),
        "ok_requests": ok,
        "events": ok * args.events_per_body,
        "wall_s": wall,
        "latencies_ms": latencies,
        "statuses": statuses,
        "error": "; ".join(errors[:5]) or None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=-1)
    parser.add_argument("--events-per-body", type=int, default=1)
    parser.add_argument("--expect", default="200,201")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="stop sending new requests after this long (0: send them all)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    bodies = args.bodies.read_bytes().split(b"\n")
    if bodies and not bodies[-1]:
        bodies.pop()
    end = len(bodies) if args.count < 0 else args.start + args.count
    requests = _requests(args.path, args.port, bodies[args.start:end],
                         os.environ.get("CHAINTRACE_BENCH_API_KEY") or None)
    del bodies
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        runner = asyncio.run
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = runner(_main(args, requests))
    after = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
