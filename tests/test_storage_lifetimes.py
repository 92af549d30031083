"""Issue 16's storage defects, as a user meets them: adapters swept with the bitstreams, a sweep that
ran only when the API restarted, and the CLI and the service keeping adapters in different folders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from service import stack as st
from service.core.config import Settings
from udic_jobs import storage_from_settings
from udic_jobs.storage.sweep import sweep


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _adapter(settings: Settings, age_s: float) -> Path:
    adapter = settings.domains_path / "screens-0123456789ab.pt"
    adapter.parent.mkdir(parents=True, exist_ok=True)
    adapter.write_bytes(b"adapter")
    _age(adapter, age_s)
    return adapter


def test_retention_sweep_keeps_domain_adapters(tmp_path: Path) -> None:
    settings = Settings(storage_root=tmp_path, retention_s=3600)
    storage = storage_from_settings(settings)
    storage.put("bitstreams/old.udic", b"x")
    _age(tmp_path / "bitstreams" / "old.udic", 2 * 3600)
    adapter = _adapter(settings, 30 * 24 * 3600)
    sweep(storage, settings.retention_s, lambda _: None)
    assert not (tmp_path / "bitstreams" / "old.udic").exists()
    assert adapter.exists(), "a month-old domain adapter was deleted by the retention sweep"


def test_cli_and_service_use_the_same_domain_folder_by_default() -> None:
    from codec.zoo.registry import DEFAULT_DOMAINS_DIR

    assert Settings().domains_path.resolve() == DEFAULT_DOMAINS_DIR.resolve()


def test_running_api_sweeps_periodically_and_never_adapters(redis_url: str, tmp_path: Path) -> None:
    """Files that expire while the API runs are deleted without a restart; adapters never are."""
    root = tmp_path / "storage"
    env = st.service_env(
        {
            "UDIC_REDIS_URL": redis_url,
            "UDIC_STORAGE_ROOT": str(root),
            "UDIC_RETENTION_S": "3600",
            "UDIC_SWEEP_INTERVAL_S": "0.5",
            "UDIC_LOG_JSON": "true",
        }
    )
    port = st.free_port()
    api = st.start_api(port, env, tmp_path / "api.log")
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        settings = Settings(storage_root=root)
        storage = storage_from_settings(settings)
        storage.put("bitstreams/expired.udic", b"x")
        storage.put("bitstreams/fresh.udic", b"y")
        _age(root / "bitstreams" / "expired.udic", 2 * 3600)
        adapter = _adapter(settings, 365 * 24 * 3600)
        deadline = time.monotonic() + 20
        while (root / "bitstreams" / "expired.udic").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (root / "bitstreams" / "expired.udic").exists(), "the running API never swept"
        assert (root / "bitstreams" / "fresh.udic").exists() and adapter.exists()
    finally:
        st.stop(api)
    log = (tmp_path / "api.log").read_text()
    assert '"key": "bitstreams/expired.udic"' in log and '"reason": "retention"' in log  # each deletion logged
