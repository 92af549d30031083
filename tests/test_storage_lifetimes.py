"""Issue 16's storage defects, as a user meets them: adapters swept with the bitstreams, and the CLI
and the service keeping adapters in different folders. (The sweep that ran only when the API
restarted: tests/e2e/test_storage_e2e.py, on the running stack.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

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
