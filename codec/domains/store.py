"""Where trained domain adapters live, and how they are named.

A domain adapter is a file ``<id>.pt`` in the store's folder (the service's ``UDIC_DOMAINS_DIR``,
default ``<storage_root>/domains``; the codec's default registry uses ``var/domains``). Its *hash*
is an 8-byte BLAKE2b of the decoder-side tensors (what a decoder needs); its *id* is the first 12
hex digits of that hash plus the user's name, so the same weights always get the same id.
Bitstreams carry id and hash; decoders refuse a mismatch.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


class DomainStore:
    def __init__(self, root: Path):
        self.root = Path(root)

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
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{rec.id}.tmp"
        torch.save(
            {
                **rec.summary(),
                "hash": rec.hash,
                "base_hash": rec.base_hash,
                "rank": rec.rank,
                "decoder": rec.decoder,
                "encoder": rec.encoder,
            },
            tmp,
        )
        os.replace(tmp, self.root / f"{rec.id}.pt")
        return rec

    def get(self, domain_id: str) -> DomainRecord:
        if not re.match(r"^[A-Za-z0-9_-]{1,64}$", domain_id):
            raise UnknownDomainError(f"unknown domain adapter {domain_id!r}")
        path = self.root / f"{domain_id}.pt"
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise UnknownDomainError(f"unknown domain adapter {domain_id!r} (not in {self.root})") from None
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

    def list(self) -> list[DomainRecord]:
        if not self.root.is_dir():
            return []
        return sorted((self.get(p.stem) for p in self.root.glob("*.pt")), key=lambda r: r.created)
