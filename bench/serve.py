"""Serving latency on loopback: single-row POST /predict requests from concurrent clients.

Starts ``dlw serve RUN`` in its own process (a penguins run trained for 3 epochs when no
run is given), waits for /health, then sends ``--requests`` requests of one row each from
``--clients`` concurrent keep-alive clients (bare sockets, or aiohttp with ``--client
aiohttp``), stopping early at ``--max-seconds``. Prints errors, p50, p99, throughput and the
CPU the server and the clients spent per request, as one JSON line. Loopback only: the
server binds 127.0.0.1.

    python bench/serve.py                        # 10,000 requests, 32 clients
    python bench/serve.py --client aiohttp       # the same with aiohttp's clients
    python bench/serve.py --run runs/penguins --requests 2000 --clients 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROW = {"island": "Biscoe", "bill_length_mm": 45.1, "bill_depth_mm": 14.5, "flipper_length_mm": 215.0, "body_mass_g": 5000.0, "sex": "female", "year": 2008}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train_penguins(folder: Path) -> Path:
    out = folder / "penguins"
    subprocess.run([sys.executable, "-m", "dlw", "train", "penguins", "--set", "train.epochs=3", "--out", str(out), "-q"], check=True)
    return out


def start_server(run: Path, port: int, max_rows: int = 1000) -> subprocess.Popen:
    """``dlw serve`` in its own process; returns once /health answers (the model is loaded and warm)."""
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "dlw", "serve", str(run), "--port", str(port), "--max-rows", str(max_rows), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dlw serve exited with {process.returncode}: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("dlw serve did not answer /health within 180 s")


async def hammer(port: int, *, requests: int, clients: int, max_seconds: float, row: dict = ROW) -> dict:
    """Send ``requests`` single-row requests from ``clients`` concurrent clients; their latencies and errors.

    Each client is one keep-alive connection (aiohttp, whose client costs about a third of
    httpx's CPU per request, so that the clients leave more of the 2 cores to the server).
    """
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    remaining = [requests]
    deadline = time.perf_counter() + max_seconds
    body = json.dumps({"rows": [row]}).encode()
    headers = {"content-type": "application/json"}
    url = f"http://127.0.0.1:{port}/predict"

    async def client() -> None:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                started = time.perf_counter()
                try:
                    async with http.post(url, data=body, headers=headers) as response:
                        text = await response.text()
                    if response.status != 200 or "prediction" not in text:
                        errors.append(f"{response.status}: {text[:200]}")
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return summary(latencies, errors, clients, time.perf_counter() - started)


def summary(latencies: list[float], errors: list[str], clients: int, elapsed: float) -> dict:
    """Errors, latency percentiles (ms) and throughput of one load run."""
    ms = np.asarray(latencies) * 1000.0
    return {
        "requests": len(latencies),
        "clients": clients,
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "seconds": round(elapsed, 2),
    }


async def hammer_raw(port: int, *, requests: int, clients: int, max_seconds: float, row: dict = ROW) -> dict:
    """As ``hammer``, but each client is a bare keep-alive HTTP/1.1 socket (asyncio streams).

    A load generator written as lean as wrk's: about a quarter of aiohttp's CPU per request,
    so on 2 shared cores the figures say more about the server than about its clients.
    """
    latencies: list[float] = []
    errors: list[str] = []
    remaining = [requests]
    deadline = time.perf_counter() + max_seconds
    body = json.dumps({"rows": [row]}).encode()
    request = (f"POST /predict HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode() + body

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                started = time.perf_counter()
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                text = await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200") or b"prediction" not in text:
                    errors.append(f"{head[:40]!r}: {text[:200]!r}")
                latencies.append(time.perf_counter() - started)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, IndexError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return summary(latencies, errors, clients, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run folder or bundle to serve (default: train penguins for 3 epochs)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--client", choices=["raw", "aiohttp"], default="raw",
                        help="the load generator: bare sockets (lean, the default) or aiohttp sessions")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="dlw-bench-keras-"))
    with tempfile.TemporaryDirectory(prefix="dlw-bench-serve-") as tmp:
        run = args.run or train_penguins(Path(tmp))
        port = free_port()
        server = start_server(run, port)
        try:
            load = hammer_raw if args.client == "raw" else hammer
            asyncio.run(load(port, requests=200, clients=args.clients, max_seconds=30))  # connections and caches warm
            server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
            result = asyncio.run(load(port, requests=args.requests, clients=args.clients, max_seconds=args.max_seconds))
            # Where the 2 cores went: the server's CPU and this client's, per request.
            result["server_cpu_ms_per_request"] = round((cpu_seconds(server.pid) - server_cpu) * 1000 / result["requests"], 3)
            result["client_cpu_ms_per_request"] = round((time.process_time() - client_cpu) * 1000 / result["requests"], 3)
        finally:
            server.terminate()
            server.wait(timeout=30)
    result["cpus"], result["client"] = os.cpu_count(), args.client
    print(json.dumps(result))


if __name__ == "__main__":
    main()
