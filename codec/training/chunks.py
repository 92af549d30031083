"""Split a file (a training checkpoint) into parts of at most 15 MiB and join them back, hash-checked.

Why: the GPU device machine returns at most 8 files of at most 16 MiB each, and a checkpoint with
its optimiser state is 12 MB (N=48) to 25 MB (N=96). Parts are ``NAME.part000``, ``NAME.part001``...
beside ``NAME.manifest.json`` (the size and sha256 of every part and of the whole file); joining
refuses a missing, truncated or corrupted part instead of resuming from a damaged checkpoint.

    python -m codec.training.chunks split runs/x/last.pt OUTDIR
    python -m codec.training.chunks join OUTDIR/last.pt.manifest.json runs/x/last.pt
    python -m codec.training.chunks verify OUTDIR/last.pt.manifest.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

PART_BYTES = 15 << 20


class ChunkError(Exception):
    """A part is missing or does not match the manifest."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(src: Path, dest: Path, part_bytes: int = PART_BYTES) -> Path:
    """Write ``src`` as parts of at most ``part_bytes`` into ``dest`` and return the manifest's path.

    Parts of an earlier split of the same name in ``dest`` are removed first, so no stale part survives.
    """
    if part_bytes <= 0:
        raise ValueError("part_bytes must be positive")
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob(f"{src.name}.part*"):
        old.unlink()
    whole = hashlib.sha256()
    parts: list[dict[str, Any]] = []
    with open(src, "rb") as f:
        while True:
            data = f.read(part_bytes)
            if not data and parts:
                break
            name = f"{src.name}.part{len(parts):03d}"
            (dest / name).write_bytes(data)
            whole.update(data)
            parts.append({"file": name, "size": len(data), "sha256": _sha256(data)})
            if len(data) < part_bytes:
                break
    manifest = {"name": src.name, "size": sum(p["size"] for p in parts), "sha256": whole.hexdigest(), "parts": parts}
    path = dest / f"{src.name}.manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def _read_parts(manifest_path: Path) -> tuple[dict, list[bytes]]:
    manifest = json.loads(manifest_path.read_text())
    chunks = []
    for part in manifest["parts"]:
        path = manifest_path.parent / part["file"]
        if not path.is_file():
            raise ChunkError(f"missing part {path}")
        data = path.read_bytes()
        if len(data) != part["size"] or _sha256(data) != part["sha256"]:
            raise ChunkError(f"part {path} does not match the manifest (size {len(data)}, expected {part['size']})")
        chunks.append(data)
    return manifest, chunks


def verify(manifest_path: Path) -> dict:
    """Check every part and the whole against the manifest; return the manifest."""
    manifest, chunks = _read_parts(manifest_path)
    whole = hashlib.sha256()
    for c in chunks:
        whole.update(c)
    if whole.hexdigest() != manifest["sha256"]:
        raise ChunkError(f"the parts of {manifest_path} do not make the file it names")
    return manifest


def join(manifest_path: Path, dst: Path) -> Path:
    """Rebuild the file from its parts (all checked first), written atomically to ``dst``."""
    manifest, chunks = _read_parts(manifest_path)
    data = b"".join(chunks)
    if len(data) != manifest["size"] or _sha256(data) != manifest["sha256"]:
        raise ChunkError(f"the parts of {manifest_path} do not make the file it names")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dst)
    return dst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("src", type=Path)
    s.add_argument("dest", type=Path)
    s.add_argument("--part-mib", type=float, default=15.0)
    j = sub.add_parser("join")
    j.add_argument("manifest", type=Path)
    j.add_argument("dst", type=Path)
    v = sub.add_parser("verify")
    v.add_argument("manifest", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "split":
            path = split(args.src, args.dest, int(args.part_mib * (1 << 20)))
            print(f"wrote {path} ({len(json.loads(path.read_text())['parts'])} parts)")
        elif args.cmd == "join":
            print(f"wrote {join(args.manifest, args.dst)}")
        else:
            m = verify(args.manifest)
            print(f"{args.manifest}: {len(m['parts'])} parts, {m['size']} bytes, ok")
    except ChunkError as exc:
        raise SystemExit(f"chunks: {exc}") from None


if __name__ == "__main__":
    main()
