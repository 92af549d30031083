"""The job contract (``udic_jobs``): payloads, records, the Redis store, and the layering around it."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from tests.conftest import ROOT
from udic_jobs import DomainPayload, EncodePayload, JobRecord, JobStore, parse_payload
from udic_jobs.payloads import FAILURE_CALLBACK
from udic_jobs.storage import bitstream_key, input_keys, sample_key, upload_key

# options dicts exactly as the service stored them before the payloads were typed
LEGACY_ENCODE = {
    "model": "default",
    "quality": 3.0,
    "lmbda": None,
    "adaptation": "fast",
    "time_budget_s": 6.0,
    "domain": None,
    "kind": "encode",
}
LEGACY_DOMAIN = {
    "kind": "domain",
    "model": "default",
    "adaptation": "none",
    "domain_name": "screens",
    "steps": 12,
    "stage2_steps": 3,
    "time_budget_s": None,
    "samples": 5,
}


def test_payloads_read_and_write_the_stored_options_unchanged() -> None:
    enc, dom = parse_payload(LEGACY_ENCODE), parse_payload(LEGACY_DOMAIN)
    assert isinstance(enc, EncodePayload) and isinstance(dom, DomainPayload)
    # same keys and values: stored records, and Idempotency-Key fingerprints, stay valid
    assert enc.model_dump() == LEGACY_ENCODE and dom.model_dump() == LEGACY_DOMAIN
    no_kind = {k: v for k, v in LEGACY_ENCODE.items() if k != "kind"}
    assert parse_payload(no_kind) == enc


def test_record_round_trip_and_payload_kind() -> None:
    rec = JobRecord(id="j1", owner="alice", state="queued", created_at=1.5, options=parse_payload(LEGACY_DOMAIN))
    rec.progress = {"stage": "done", "iteration": 3}
    raw = {k.encode(): v.encode() for k, v in rec.to_redis().items()}
    back = JobRecord.from_redis(raw)
    assert back == rec and json.loads(rec.to_redis()["options"]) == LEGACY_DOMAIN
    assert back.payload(DomainPayload).samples == 5
    with pytest.raises(TypeError):
        back.payload(EncodePayload)


def test_blob_keys() -> None:
    assert upload_key("j") == "uploads/j" and bitstream_key("j") == "bitstreams/j.udic"
    assert input_keys("j", parse_payload(LEGACY_ENCODE)) == ["uploads/j"]
    assert input_keys("j", parse_payload(LEGACY_DOMAIN)) == [sample_key("j", i) for i in range(5)]
    assert sample_key("j", 0) == "uploads/j/0"
    rec = JobRecord.queued("j", "alice", EncodePayload(), upload_bytes=3)
    assert (rec.state, rec.upload_key, rec.upload_bytes) == ("queued", "uploads/j", 3) and rec.created_at > 0


def test_task_names_resolve_to_worker_functions() -> None:
    for dotted in (EncodePayload.TASK, DomainPayload.TASK, FAILURE_CALLBACK):
        module, _, name = dotted.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), dotted


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_layering() -> None:
    """udic_jobs imports none of the service, the worker, the codec, FastAPI or rq; the worker
    imports none of the service but its shared core (settings, logging)."""
    for path in (ROOT / "udic_jobs").glob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("service", "worker", "codec", "fastapi", "rq")}
        assert not bad, (path.name, bad)
    for path in (ROOT / "worker").glob("*.py"):
        bad = {m for m in _imports(path) if m.startswith("service") and not m.startswith("service.core")}
        assert not bad, (path.name, bad)
    routes = ROOT / "service" / "api" / "routes"
    for path in routes.glob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("service.api.routes", "redis", "rq"))}
        assert not bad, (path.name, bad)
    code = "import sys, udic_jobs; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'rq')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def store(redis_url: str) -> JobStore:
    return JobStore(Redis.from_url(redis_url), "t", 60)


def _record(job_id: str, owner: str, created: float) -> JobRecord:
    return JobRecord(id=job_id, owner=owner, state="queued", created_at=created, options=EncodePayload())


def test_store_transitions_and_stats(store: JobStore) -> None:
    store.create(_record("a", "alice", 1.0))
    store.create(_record("b", "alice", 2.0))
    store.create(_record("c", "bob", 3.0))
    assert [r.id for r in store.recent("alice", 10)] == ["b", "a"]
    rec = store.get("a")
    assert rec is not None and store.mark_running(rec) > 0
    store.mark_retrying("a", "worker-lost", "lost; retrying")
    again = store.get("a")
    assert again is not None and (again.state, again.attempts, again.error["type"]) == ("queued", 1, "worker-lost")
    store.mark_finished("a", metrics={"bytes": 3})
    store.mark_failed("b", "invalid-input", "bad")
    store.request_cancel("c")
    assert store.cancel_requested("c") and not store.cancel_requested("a")
    store.mark_cancelled("c")
    states = {r.id: (r.state, r.error) for r in (store.get(i) for i in "abc") if r is not None}
    assert states == {
        "a": ("finished", {"type": "worker-lost", "detail": "lost; retrying"}),
        "b": ("failed", {"type": "invalid-input", "detail": "bad"}),
        "c": ("cancelled", {}),
    }
    store.update("gone", state="finished")  # never resurrects an expired record
    assert store.get("gone") is None
    for s in range(1003):
        store.record_encode_seconds(float(s))
    assert store.encode_seconds() == [float(s) for s in range(3, 1003)]
    assert store.job_counts() == {"finished": 1, "failed": 1, "cancelled": 1}
    # the key layout jobs already stored in Redis use
    assert store.r.llen("t:stats:encode_seconds") == 1000 and store.r.hlen("t:stats:jobs") == 3
    assert store.r.exists("t:job:a", "t:jobs:alice", "t:job:c:cancel") == 3


def test_store_idempotency(store: JobStore) -> None:
    assert store.idempotent_job("alice", "k", "fp1", "j1") == ("j1", True)
    assert store.idempotent_job("alice", "k", "fp1", "j2") == ("j1", False)
    assert store.idempotent_job("bob", "k", "fp1", "j3") == ("j3", True)
    with pytest.raises(ValueError):
        store.idempotent_job("alice", "k", "fp2", "j4")


def test_the_api_offers_exactly_the_codec_presets() -> None:
    from typing import get_args

    from codec.adaptation.config import PRESET_NAMES
    from service.models import Adaptation

    assert get_args(Adaptation) == PRESET_NAMES


def test_a_job_rq_started_is_running_only_once_its_start_is_recorded() -> None:
    """rq says "started" a moment before the task records ``started_at``: until then the job stays
    "queued", so a "running" job always has a start time (the API shows both)."""
    from udic_jobs import resolve_state

    rec = JobRecord.queued("j1", "alice", parse_payload(dict(LEGACY_ENCODE)))
    assert resolve_state(rec, "started") == "queued"
    rec.state, rec.started_at = "running", 1.0
    assert resolve_state(rec, "started") == "running"
    assert resolve_state(rec, "queued") == "queued"  # re-queued after a lost worker: rq knows best
