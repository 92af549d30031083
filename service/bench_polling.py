"""Benchmark: how many ``GET /v1/jobs/{id}`` polls per second the API answers, and their p50/p99,
while one worker encodes.

    python -m service.bench_polling --api-processes 2 --seconds 20 --connections 32

What runs: a real redis-server, the API under uvicorn with ``--api-processes`` processes, one worker
kept busy with an adaptive encode for the whole measurement, API keys on (the rate limiter runs,
with a limit set high enough not to answer 429). The polled job is the one being encoded, so each
poll takes the running-job path. The load comes from this process: ``--connections`` keep-alive
HTTP/1.1 connections on one asyncio loop, each sending its next request when the last answer came
(a closed loop), written with bare sockets so that the client costs little CPU next to the server
on the same machine. Prints one JSON line and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from service import stack as st

KEY = "bench-key-0123456789"


async def _poll(host: str, port: int, request: bytes, stop_at: float, lat: list[float], codes: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            codes[status] = codes.get(status, 0) + 1
    finally:
        writer.close()


async def load(port: int, path: str, connections: int, seconds: float) -> dict[str, Any]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n\r\n"
    ).encode()  # fmt: skip
    lat: list[float] = []
    codes: dict[int, int] = {}
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*(_poll("127.0.0.1", port, request, stop_at, lat, codes) for _ in range(connections)))
    wall = time.perf_counter() - t0
    lat.sort()

    def pct(q: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 2)

    return {
        "requests": len(lat),
        "seconds": round(wall, 2),
        "req_per_s": round(len(lat) / wall, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(1000 * lat[-1], 2),
        "statuses": codes,
    }


def _api(port: int, processes: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "uvicorn", "service.main:app", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--workers", str(processes), "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=st.ROOT)

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200

    st.wait_until(healthy, 180, "the API", proc)
    return proc


def _submit(port: int, png: bytes, fields: dict[str, str]) -> str:
    import httpx

    h = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(f"http://127.0.0.1:{port}/v1/jobs", files={"file": ("b.png", png)}, data=fields, headers=h)
    r.raise_for_status()
    return str(r.json()["id"])


def _wait_running(port: int, job_id: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"http://127.0.0.1:{port}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY}"})
        if r.json()["state"] == "running":
            return
        time.sleep(0.2)
    raise RuntimeError(f"job {job_id} did not start")


def _state(port: int, job_id: str) -> str:
    import httpx

    r = httpx.get(f"http://127.0.0.1:{port}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY}"})
    return str(r.json()["state"])


def _image() -> bytes:
    from PIL import Image

    from codec.datasets import datasets_root

    root = datasets_root()
    buf = io.BytesIO()
    if root is not None:
        with Image.open(root / "kodak" / "kodim05.png") as im:
            im.convert("RGB").save(buf, format="PNG")
    else:
        Image.effect_noise((768, 512), 40).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def run(processes: int, seconds: float, connections: list[int], data: Path, warmup: float) -> list[dict[str, Any]]:
    """One stack with ``processes`` API processes, measured at each connection count in turn."""
    redis_port, api_port = st.free_port(), st.free_port()
    env = st.service_env(
        {
            "UDIC_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "UDIC_STORAGE_ROOT": str(data / "storage"),
            "UDIC_API_KEYS": f"{KEY}:bench",
            "UDIC_RATE_LIMIT_REQUESTS": "100000000",
            "UDIC_LOG_LEVEL": "WARNING",
        }
    )
    procs: list[subprocess.Popen] = []
    try:
        procs.append(st.start_redis(redis_port, data / "redis", data / "redis.log"))
        procs.append(_api(api_port, processes, env, data / "api.log"))
        procs.append(st.start_worker(env, data / "worker.log"))
        # an adaptive encode that outlasts the measurement keeps the worker busy throughout
        budget = str(warmup + (seconds + 5) * len(connections) + 60)
        job = _submit(api_port, _image(), {"quality": "3", "adaptation": "max", "time_budget_s": budget})
        _wait_running(api_port, job)
        # each API process starts its decoder processes in the background: let them settle first
        asyncio.run(load(api_port, f"/v1/jobs/{job}", max(connections), warmup))
        rows = []
        for c in connections:
            before = os.getloadavg()[0]
            result = asyncio.run(load(api_port, f"/v1/jobs/{job}", c, seconds))
            state = _state(api_port, job)
            row: dict[str, Any] = {"api_processes": processes, "connections": c, "cpus": os.cpu_count()}
            row["job_state_after"] = state
            row |= {"load_avg_1m_before": round(before, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2)}
            rows.append(row | result)
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for proc in reversed(procs):
            st.stop(proc)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api-processes", type=int, nargs="+", default=[2])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--connections", type=int, nargs="+", default=[32])
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of load before measuring")
    ap.add_argument("--out", type=Path, default=st.ROOT / "docs" / "bench" / "polling.json")
    args = ap.parse_args(argv)
    rows = []
    for n in args.api_processes:
        with tempfile.TemporaryDirectory(prefix="udic-bench-polling-") as tmp:
            rows += run(n, args.seconds, args.connections, Path(tmp), args.warmup)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"command": "python -m service.bench_polling " + " ".join(argv or sys.argv[1:]), "runs": rows}, indent=1
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
