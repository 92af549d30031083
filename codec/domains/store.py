"""Where trained domain adapters live, and how they are named.

A domain adapter is a file ``<id>.pt``, kept by an :class:`AdapterFiles`: a local folder
(:class:`FolderFiles`; the codec's default registry uses ``var/storage/domains``, the service's
default folder too) or, in the service, its blob storage (``domains/`` in the folder or the S3
bucket every host shares). Its *hash* is an 8-byte BLAKE2b of the decoder-side tensors (what a
decoder needs); its *id* is the first 12 hex digits of that hash plus the user's name, so the same
weights always get the same id. Bitstreams carry id and hash; decoders refuse a mismatch.
Adapters live until deleted (:meth:`DomainStore.delete`): nothing here expires them.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")


class DomainError(ValueError):
    kind = "domain-error"


class UnknownDomainError(DomainError):
    kind = "unknown-domain"


class TrainedAdapter(Protocol):
    """What the store keeps of a training run (:class:`codec.domains.train.DomainTraining` has it).

    A protocol, not the training result's class: storing and loading adapters (which decoders do)
    must not depend on the training code.
    """

    @property
    def decoder(self) -> dict[str, torch.Tensor]: ...
    @property
    def encoder(self) -> dict[str, torch.Tensor]: ...
    @property
    def rank(self) -> int: ...
    @property
    def gain_pct(self) -> float: ...
    @property
    def n_train(self) -> int: ...
    @property
    def n_val(self) -> int: ...


def content_hash(decoder: dict[str, torch.Tensor]) -> bytes:
    h = hashlib.blake2b(digest_size=8)
    for key in sorted(decoder):
        h.update(key.encode())
        h.update(decoder[key].detach().float().cpu().contiguous().numpy().tobytes())
    return h.digest()


@dataclass
class DomainRecord:
    id: str
    name: str
    base_model: str
    base_hash: str
    hash: bytes
    rank: int
    gain_pct: float
    created: float
    n_train: int
    n_val: int
    decoder: dict[str, torch.Tensor]
    encoder: dict[str, torch.Tensor]
    owner: str = "anonymous"

    def summary(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "base_model": self.base_model,
            "hash": self.hash.hex(),
            "gain_pct": round(self.gain_pct, 3),
            "created": self.created,
            "n_train": self.n_train,
            "n_val": self.n_val,
        }


@runtime_checkable
class AdapterFiles(Protocol):
    """Adapter files by name (``<id>.pt``): a folder here, or the service's blob storage.

    ``read`` raises KeyError (or FileNotFoundError) for a missing file; ``write`` is atomic."""

    @property
    def where(self) -> str: ...
    def read(self, name: str) -> bytes: ...
    def exists(self, name: str) -> bool: ...
    def write(self, name: str, data: bytes) -> None: ...
    def names(self) -> list[str]: ...
    def remove(self, name: str) -> None: ...


class FolderFiles:
    """Adapter files in a local folder (written atomically: temp file, then rename)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FolderFiles) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @property
    def where(self) -> str:
        return str(self.root)

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def write(self, name: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self.root / name)
        finally:
            tmp.unlink(missing_ok=True)

    def names(self) -> list[str]:
        return [p.name for p in self.root.glob("*.pt")] if self.root.is_dir() else []

    def remove(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)


_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class DomainStore:
    """Saves, loads, lists and deletes adapters in ``files`` (a folder path means :class:`FolderFiles`)."""

    def __init__(self, files: Path | str | AdapterFiles):
        self.files: AdapterFiles = files if isinstance(files, AdapterFiles) else FolderFiles(Path(files))

    @property
    def root(self) -> Path:
        """The folder of a folder-backed store (what the CLI prints); a storage's location otherwise."""
        return self.files.root if isinstance(self.files, FolderFiles) else Path(self.files.where)

    def save(
        self, name: str, base_model: str, base_hash: bytes, trained: TrainedAdapter, owner: str = "anonymous"
    ) -> DomainRecord:
        if not _NAME.match(name):
            raise DomainError("a domain name is 1-48 letters, digits, '_' or '-'")
        decoder = {k: v.half() for k, v in trained.decoder.items()}  # stored (and hashed) as decoders load it
        encoder = {k: v.half() for k, v in trained.encoder.items()}
        h = content_hash(decoder)
        rec = DomainRecord(
            f"{name}-{h.hex()[:12]}",
            name,
            base_model,
            base_hash.hex(),
            h,
            trained.rank,
            trained.gain_pct,
            time.time(),
            trained.n_train,
            trained.n_val,
            decoder,
            encoder,
            owner,
        )
        buf = io.BytesIO()
        torch.save(
            {
                **rec.summary(),
                "hash": rec.hash,
                "base_hash": rec.base_hash,
                "rank": rec.rank,
                "decoder": rec.decoder,
                "encoder": rec.encoder,
            },
            buf,
        )
        self.files.write(f"{rec.id}.pt", buf.getvalue())
        return rec

    def get(self, domain_id: str) -> DomainRecord:
        if not _ID.match(domain_id):
            raise UnknownDomainError(f"unknown domain adapter {domain_id!r}")
        try:
            raw = self.files.read(f"{domain_id}.pt")
        except (KeyError, FileNotFoundError):
            raise UnknownDomainError(f"unknown domain adapter {domain_id!r} (not in {self.files.where})") from None
        d = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        return DomainRecord(
            d["id"],
            d["name"],
            d["base_model"],
            d["base_hash"],
            d["hash"],
            d["rank"],
            d["gain_pct"],
            d["created"],
            d["n_train"],
            d["n_val"],
            d["decoder"],
            d["encoder"],
            d.get("owner", "anonymous"),
        )

    def exists(self, domain_id: str) -> bool:
        """Whether the adapter is (still) stored: one stat, or one HEAD request on a bucket."""
        return bool(_ID.match(domain_id)) and self.files.exists(f"{domain_id}.pt")

    def delete(self, domain_id: str) -> None:
        """Remove an adapter (UnknownDomainError if there is none): bitstreams coded with it stop decoding."""
        self.get(domain_id)
        self.files.remove(f"{domain_id}.pt")

    def list(self) -> list[DomainRecord]:
        recs = []
        for name in self.files.names():
            if name.endswith(".pt") and not name.startswith("."):
                try:
                    recs.append(self.get(name[: -len(".pt")]))
                except UnknownDomainError:  # deleted while we listed
                    continue
        return sorted(recs, key=lambda r: r.created)
