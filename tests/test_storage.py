"""The storage contract, run against both backends: a folder, and a real S3-compatible server
(moto's, started on loopback for this module). Plus each kind's lifetime under the sweep."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from codec.domains.store import DomainStore, UnknownDomainError
from service.core.config import Settings
from tests.moto_s3 import CREDENTIALS, create_bucket, moto_server
from udic_jobs.storage import FileSystemStorage, Storage, StorageAdapterFiles, StorageError, storage_from_settings
from udic_jobs.storage.s3 import S3Storage, parse_s3_url
from udic_jobs.storage.sweep import sweep


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in CREDENTIALS.items():
            mp.setenv(k, v)
        with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
            yield endpoint


@pytest.fixture(params=["folder", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "folder":
        return FileSystemStorage(tmp_path / "storage")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"udic-{uuid.uuid4().hex[:12]}"
    create_bucket(endpoint, bucket)
    return S3Storage(f"s3://{bucket}/some/prefix", endpoint)


def test_put_get_exists_delete(storage: Storage) -> None:
    assert not storage.exists("bitstreams/a.udic")
    with pytest.raises(KeyError):
        storage.get("bitstreams/a.udic")
    storage.put("bitstreams/a.udic", b"abc")
    assert storage.get("bitstreams/a.udic") == b"abc" and storage.exists("bitstreams/a.udic")
    storage.put("bitstreams/a.udic", b"new")  # replaced whole
    assert storage.get("bitstreams/a.udic") == b"new"
    storage.delete("bitstreams/a.udic")
    storage.delete("bitstreams/a.udic")  # deleting what is gone is no error
    assert not storage.exists("bitstreams/a.udic")
    assert storage.ping()


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "", ".hidden", "x" * 300])
def test_keys_cannot_escape_the_root(storage: Storage, key: str) -> None:
    for op in (lambda: storage.put(key, b"x"), lambda: storage.get(key), lambda: storage.delete(key)):
        with pytest.raises(StorageError):
            op()


def test_list_by_prefix(storage: Storage) -> None:
    t0 = time.time()
    storage.put("uploads/j1/0", b"12")
    storage.put("uploads/j1/1", b"345")
    storage.put("uploads/j2", b"6")
    storage.put("bitstreams/j2.udic", b"789")
    listed = {b.key: b for b in storage.list("uploads/")}
    assert sorted(listed) == ["uploads/j1/0", "uploads/j1/1", "uploads/j2"]
    assert listed["uploads/j1/1"].size == 3
    assert all(abs(b.modified - t0) < 60 for b in listed.values())
    assert sorted(b.key for b in storage.list("uploads/j1/")) == ["uploads/j1/0", "uploads/j1/1"]
    assert list(storage.list("domains/")) == []


def test_sweep_deletes_each_kind_at_the_end_of_its_lifetime(storage: Storage) -> None:
    states = {"ended": "finished", "failed": "failed", "busy": "running"}
    storage.put("uploads/ended", b"u")
    storage.put("uploads/failed/0", b"u")
    storage.put("uploads/busy", b"u")
    storage.put("uploads/orphan", b"u")  # no record (yet): the API stores the upload first
    storage.put("bitstreams/ended.udic", b"b")
    storage.put("refs/screens-0123/ended", b"")
    storage.put("domains/screens-0123.pt", b"adapter")
    now = time.time()
    report = sweep(storage, 3600, states.get, now=now)
    assert sorted(report.deleted) == ["uploads/ended", "uploads/failed/0"]
    # an hour later: the record-less upload is an orphan; a day later the bitstream and its ref expire
    assert sweep(storage, 3600, states.get, now=now + 1800).deleted == ["uploads/orphan"]
    later = sweep(storage, 3600, states.get, now=now + 86400)
    assert sorted(later.deleted) == ["bitstreams/ended.udic", "refs/screens-0123/ended", "uploads/busy"]
    # ten years on, the adapter is still there: adapters live until deleted
    assert sweep(storage, 3600, states.get, now=now + 3.2e8).deleted == []
    assert storage.get("domains/screens-0123.pt") == b"adapter"


@dataclass
class _Trained:
    """What DomainStore keeps of a training run (a tiny stand-in with real tensors)."""

    decoder: dict[str, torch.Tensor] = field(default_factory=lambda: {"a.weight": torch.arange(6.0).reshape(2, 3)})
    encoder: dict[str, torch.Tensor] = field(default_factory=lambda: {"b.weight": torch.ones(2, 2)})
    rank: int = 2
    gain_pct: float = 4.5
    n_train: int = 4
    n_val: int = 1


def test_domain_adapters_saved_listed_loaded_and_deleted_through_storage(storage: Storage) -> None:
    store = DomainStore(StorageAdapterFiles(storage))
    assert store.list() == []
    rec = store.save("screens", "default", b"\x01" * 8, _Trained(), owner="alice")
    assert storage.exists(f"domains/{rec.id}.pt")
    again = DomainStore(StorageAdapterFiles(storage)).get(rec.id)  # another process: same bytes
    assert again.hash == rec.hash and again.owner == "alice"
    assert torch.equal(again.decoder["a.weight"], rec.decoder["a.weight"])
    assert [r.id for r in store.list()] == [rec.id]
    store.delete(rec.id)
    assert store.list() == []
    with pytest.raises(UnknownDomainError):
        store.get(rec.id)
    with pytest.raises(UnknownDomainError):
        store.delete(rec.id)


def test_folder_writes_leave_no_temp_files_and_stale_temps_are_swept(tmp_path: Path) -> None:
    s = FileSystemStorage(tmp_path)
    s.put("bitstreams/a.udic", b"abc")
    assert [p.name for p in (tmp_path / "bitstreams").iterdir()] == ["a.udic"]
    crashed = tmp_path / "bitstreams" / ".b.udic.0123.tmp"
    crashed.write_bytes(b"half")
    assert [b.key for b in s.list("bitstreams/")] == ["bitstreams/a.udic"]  # a write may be in progress
    old = time.time() - 7200
    os.utime(crashed, (old, old))
    assert "bitstreams/.b.udic.0123.tmp" in sweep(s, 3600, lambda _: None).deleted
    s.put("uploads/j/0", b"x")
    s.delete("uploads/j/0")
    assert not (tmp_path / "uploads" / "j").exists()  # a domain job's emptied folder goes too


def test_one_setting_chooses_the_backend(tmp_path: Path, s3_endpoint: str) -> None:
    folder = storage_from_settings(Settings(storage_root=tmp_path / "a"))
    assert isinstance(folder, FileSystemStorage) and folder.root == tmp_path / "a"
    url = storage_from_settings(Settings(storage_root=tmp_path / "a", storage_url=f"file://{tmp_path}/b"))
    assert isinstance(url, FileSystemStorage) and url.root == tmp_path / "b"
    create_bucket(s3_endpoint, "chosen")
    s3 = storage_from_settings(Settings(storage_url="s3://chosen/udic", s3_endpoint_url=s3_endpoint))
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("chosen", "udic") and s3.ping()
    assert not S3Storage("s3://no-such-bucket", s3_endpoint).ping()
    for bad in ("ftp://x/y", "s3://", "s3:///path"):
        with pytest.raises(StorageError):
            storage_from_settings(Settings(storage_url=bad))
    assert parse_s3_url("s3://b") == ("b", "")
