"""Drive the multi-host demo (scripts/multi_host_demo.sh) through the SDK and check what each process
did: encodes spread over both workers, a domain adapter trained on one worker used by the other,
decodes in the API from the bucket, nothing left in uploads/, the adapter refused deletion while in use.
Prints a JSON summary (and writes it with --out)."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx
import numpy as np
from PIL import Image
from udic_client import Client

from codec.datasets import bench_images


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def wait_ready(url: str, logs: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = [
            (logs / f"worker-{i}.log").exists() and "worker ready" in (logs / f"worker-{i}.log").read_text()
            for i in (1, 2)
        ]
        try:
            api = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            api = False
        if api and all(ready):
            return
        time.sleep(1)
    sys.exit("the API and two workers did not come up")


def ran_on(logs: Path, job_id: str) -> str:
    for name in ("worker-1", "worker-2"):
        if re.search(rf'"(job|domain training) started".*"job_id": "{job_id}"', (logs / f"{name}.log").read_text()):
            return name
    return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--logs", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="also write the summary here (docs/bench/multi_host_demo.json)")
    args = ap.parse_args()
    t0 = time.monotonic()
    wait_ready(args.url, args.logs)
    started_s = time.monotonic() - t0
    c = Client(args.url, poll_interval=0.1)
    crops = [png(b.rgb[:192, :256]) for b in bench_images("kodak", 4)]

    # four encodes at once: the two workers share them
    t1 = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda img: c.compress(img, quality=3, progress=False, timeout=600), crops))
    encode_s = time.monotonic() - t1
    workers = {r.job.id: ran_on(args.logs, r.job.id) for r in results}

    # an adapter trained on one worker, used on the other: it travels through the bucket only
    samples = [png(b.rgb[:128, :128]) for b in bench_images("line", 5)]
    trained = c.train_domain("multihost", samples, steps=8, stage2_steps=2, progress=False, timeout=900)
    assert trained.domain is not None
    domain_id, trainer = trained.domain["id"], ran_on(args.logs, trained.id)
    with ThreadPoolExecutor(2) as pool:
        used = list(pool.map(lambda img: c.compress(img, quality=3, domain=domain_id, progress=False), samples[:2]))
    used_on = sorted({ran_on(args.logs, r.job.id) for r in used})
    decoded_ok = all(Image.open(io.BytesIO(c.decode(r.bitstream))).size == (128, 128) for r in used)

    s3 = boto3.client("s3", endpoint_url=os.environ["UDIC_S3_ENDPOINT_URL"])
    keys = [
        o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket="udic") for o in p.get("Contents", [])
    ]
    refused = httpx.delete(f"{args.url}/v1/domains/{domain_id}", timeout=30)
    summary = {
        "processes_up_s": round(started_s, 1),
        "four_encodes_s": round(encode_s, 1),
        "encodes_per_worker": {w: list(workers.values()).count(w) for w in ("worker-1", "worker-2")},
        "domain_trained_on": trainer,
        "domain_used_on": used_on,
        "decoded_in_api": decoded_ok,
        "bucket_keys_by_kind": {
            k: sum(key.startswith(f"demo/{k}/") for key in keys) for k in ("uploads", "bitstreams", "refs", "domains")
        },
        "delete_in_use": {"status": refused.status_code, "type": refused.json().get("type")},
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    ok = (
        all(r.job.state == "finished" for r in [*results, *used])
        and summary["encodes_per_worker"]["worker-1"] > 0
        and summary["encodes_per_worker"]["worker-2"] > 0
        and decoded_ok
        and summary["bucket_keys_by_kind"]["uploads"] == 0
        and refused.status_code == 409
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
