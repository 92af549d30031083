"""Benchmark: small decodes while a large one runs (issue 12, "no head-of-line blocking").

Starts the API (no worker: ``POST /v1/decode`` needs none), sends one large decode and, ``--delay``
seconds later, ``--count`` small ones (Kodak kodim23, 768x512), and reports the small decodes'
p50/p99 latency and the large decode's time, with the peak RSS of the API and its decoder
processes. For comparison in the same run: ``--one-lane`` puts every decode in one lane (one
process, one decode after another: the head-of-line blocking the lanes remove), ``--nice0`` runs
the large lane at normal CPU priority (``UDIC_DECODE_LARGE_NICE=0``).

    .venv/bin/python -m service.bench_decode_lanes --large-size 4032x3024 --nice0 --one-lane \\
        --out results/decode_lanes.json

The bitstreams are kodim23 upscaled to each size, coded at quality 3 (in a separate process, so
that the encoder's memory is gone before the API starts), kept under ``var/bench/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from service import stack as st

ROOT = Path(__file__).resolve().parent.parent
SMALL_SIZE = (768, 512)


def _encode(size: tuple[int, int], path: Path) -> None:
    """In a spawned process: kodim23 resized to ``size``, coded at quality 3."""
    from PIL import Image

    from codec.coder import encode
    from codec.datasets import datasets_root

    root = datasets_root()
    if root is None:
        raise SystemExit("../shared/datasets is not on this machine (UDIC_DATASETS)")
    with Image.open(root / "kodak" / "kodim23.png") as im:
        img = im.convert("RGB")
    if img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(img, quality=3))


def bitstream(size: tuple[int, int]) -> bytes:
    path = ROOT / "var" / "bench" / f"kodim23_{size[0]}x{size[1]}_q3.udic"
    if not path.exists():
        proc = multiprocessing.get_context("spawn").Process(target=_encode, args=(size, path))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"encoding {size[0]}x{size[1]} failed")
    return path.read_bytes()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc``)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    out, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        out += frontier
    return out


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total / 2**20


class PeakRss:
    """Peak RSS (MB) of a process and its children, sampled every 0.2 s."""

    def __init__(self, pid: int):
        self.pid, self.peak_mb = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_mb = max(self.peak_mb, _rss_mb(_tree(self.pid)))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_mb, 1)


def _post(client: httpx.Client, data: bytes) -> tuple[int, float]:
    t = time.perf_counter()
    r = client.post("/v1/decode", content=data, headers={"Content-Type": "application/octet-stream"})
    return r.status_code, time.perf_counter() - t


def _percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {
        "p50_s": round(float(np.percentile(a, 50)), 3),
        "p99_s": round(float(np.percentile(a, 99)), 3),
        "max_s": round(float(a.max()), 3),
    }


def measure(url: str, large: bytes, small: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """One large decode, then (after the delay) the small ones; latencies as the client saw them."""
    with httpx.Client(base_url=url, timeout=900) as client, ThreadPoolExecutor(1) as one:
        big = one.submit(_post, client, large)
        time.sleep(args.delay)
        with ThreadPoolExecutor(args.concurrency) as pool:
            smalls = list(pool.map(lambda _: _post(client, small), range(args.count)))
        large_status, large_s = big.result()
    ok = [s for code, s in smalls if code == 200]
    return {
        "large_status": large_status,
        "large_s": round(large_s, 3),
        "small_statuses": sorted({code for code, _ in smalls}),
        "small_ok": len(ok),
        "small_latency_s": [round(s, 3) for _, s in smalls],
        **({"small": _percentiles(ok)} if ok else {}),
    }


def run_case(
    name: str, settings: dict[str, str], large: bytes, small: bytes, args: argparse.Namespace
) -> dict[str, Any]:
    """Start the API with ``settings``, warm its decoder processes, measure, stop it."""
    port = st.free_port()
    data = Path(tempfile.mkdtemp(prefix="udic-bench-"))
    env = st.service_env(
        {
            "UDIC_STORAGE_ROOT": str(data / "storage"),
            "UDIC_REDIS_URL": f"redis://127.0.0.1:{st.free_port()}/0",  # unused by /v1/decode
            **settings,
        }
    )
    log = ROOT / "var" / "bench" / f"api-{name}.log"
    api = st.start_api(port, env, log)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=300) as client:
            assert _post(client, small)[0] == 200, f"warm-up decode failed, see {log}"
        time.sleep(args.warm_s)  # the large lane's process starts with the small one's; let it load
        rss = PeakRss(api.pid)
        out = measure(url, large, small, args)
        out["peak_rss_mb"] = rss.stop()
    finally:
        children = _tree(api.pid)[1:] if api.poll() is None else []
        st.stop(api)
        deadline = time.monotonic() + 10
        while children and time.monotonic() < deadline:
            children = [pid for pid in children if Path(f"/proc/{pid}").exists()]
            time.sleep(0.2)
        for pid in children:  # decoder processes of this API that outlived it, by pid
            os.kill(pid, signal.SIGKILL)
    return {"case": name, "settings": settings, **out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--large-size", default="4032x3024", help="WxH of the large image (kodim23 upscaled)")
    ap.add_argument("--count", type=int, default=20, help="small decodes")
    ap.add_argument("--concurrency", type=int, default=1, help="small decodes in flight at once")
    ap.add_argument("--delay", type=float, default=3.0, help="seconds between the large and the first small")
    ap.add_argument("--warm-s", type=float, default=5.0, help="wait after the warm-up decode")
    ap.add_argument("--one-lane", action="store_true", help="also run with every decode in one lane")
    ap.add_argument("--nice0", action="store_true", help="also run the lanes with the large lane at normal priority")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "decode_lanes.json")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.large_size.lower().split("x"))
    large, small = bitstream((w, h)), bitstream(SMALL_SIZE)
    cases: list[tuple[str, dict[str, str]]] = [("lanes", {})]
    if args.nice0:
        cases.append(("lanes-nice0", {"UDIC_DECODE_LARGE_NICE": "0"}))
    if args.one_lane:
        # every size in the small lane (one process); its bytes are not admitted, the budget only
        # has to exceed what that lane may use
        one_lane = {"UDIC_DECODE_SMALL_MAX_PIXELS": "50000000", "UDIC_DECODE_MEMORY_BUDGET_MB": "65536"}
        cases.append(("one-lane", one_lane))
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "-m", "service.bench_decode_lanes", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "large": {"size": f"{w}x{h}", "bytes": len(large)},
        "small": {"size": f"{SMALL_SIZE[0]}x{SMALL_SIZE[1]}", "bytes": len(small), "count": args.count},
        "delay_s": args.delay,
        "concurrency": args.concurrency,
        "cases": [run_case(name, settings, large, small, args) for name, settings in cases],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for case in report["cases"]:
        s = case.get("small", {})
        print(
            f"{case['case']:>11}: large {report['large']['size']} {case['large_s']} s; "
            f"{case['small_ok']}/{args.count} small ok, p50 {s.get('p50_s')} s, p99 {s.get('p99_s')} s, "
            f"max {s.get('max_s')} s; peak RSS {case['peak_rss_mb']} MB"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
