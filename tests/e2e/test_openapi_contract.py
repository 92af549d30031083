"""The OpenAPI document tells the truth: Schemathesis (``--checks all``) against the real stack.

Real uvicorn, Redis and worker (the session's e2e stack, API keys on). The example count is bounded
so the run takes about a minute; the seed is fixed so a failure can be replayed. The repository's
schemathesis.toml is read (cwd is the repository root): it lets the four content-checked uploads
answer 422 to schema-valid bytes that are not an image or a bitstream.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import KEYS, E2EStack

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_schemathesis_all_checks_find_no_failure(e2e: E2EStack) -> None:
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    cmd = [
        str(exe),
        "run",
        f"{e2e.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "15",
        "--seed",
        "17",
        "--no-color",
        "-H",
        f"Authorization: Bearer {KEYS['dave']}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540)
    tail = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert "passed" in out.stdout and "failed" not in out.stdout.split("SUMMARY")[-1], tail


def test_405_lists_every_method_of_the_path(e2e: E2EStack) -> None:
    r = httpx.request("PUT", f"{e2e.url}/v1/jobs/0123", headers={"Authorization": f"Bearer {KEYS['dave']}"})
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "DELETE"}


def test_every_problem_status_is_documented_as_problem_json(e2e: E2EStack) -> None:
    spec = httpx.get(f"{e2e.url}/openapi.json").json()
    assert "Problem" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for code, resp in op["responses"].items():
                if int(code) >= 400:
                    assert list(resp["content"]) == ["application/problem+json"], (method, path, code)
    job = spec["paths"]["/v1/jobs/{job_id}"]
    assert {"401", "404", "422", "429"} <= set(job["get"]["responses"])
    assert {"401", "409", "413", "422", "429"} <= set(spec["paths"]["/v1/jobs"]["post"]["responses"])
    body = spec["components"]["schemas"]["Body_create_job_v1_jobs_post"]
    assert body["properties"]["file"]["minLength"] == 1 and "file" in body["required"]
