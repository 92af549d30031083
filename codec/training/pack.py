"""Pack random training crops (and the Kodak evaluation crops) into one small file for a GPU machine.

Why: the device machine that trains on a GPU gets only a copy of the working tree plus at most
64 MiB of carried files, and it cannot reach ``../shared/datasets`` (130 MB of photos). A pack holds
as many random ``size`` x ``size`` crops of the training folders as fit in ``--max-mib``, each stored
as lossless WebP (about 8 bits per pixel on these photos, three times less than raw uint8; PNG
would take 11) or, with ``--jpeg Q``, as JPEG 4:4:4 of quality Q (about 2.2 times more crops, not
lossless). It also holds the six Kodak bench-256 crops, so training can still evaluate, and a few
whole Kodak images (``kodim23`` by default) for timing an encode on the device.

The pack is a stored (uncompressed) zip: ``manifest.json``, ``crops/NNNNNN.webp``,
``eval/kodak/NAME.webp`` and ``extra/NAME.png``. Crops are drawn round-robin over a seeded shuffle of
every training image, so every photo gives one crop before any gives a second, and the crops of a
smaller budget are a prefix of those of a larger one with the same seed.

    python -m codec.training.pack --out var/device-carry/pack.zip --max-mib 40
"""

from __future__ import annotations

import argparse
import io
import json
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec.datasets import DEFAULT_TRAINING_FOLDERS, bench_images, datasets_root, list_images

DEFAULT_EXTRAS = ("kodim23",)
MIB = 1 << 20


@dataclass
class Pack:
    """What a pack file holds, decoded: crops as uint8 CHW tensors, eval crops and extras as arrays."""

    crops: list[torch.Tensor]
    eval_crops: dict[str, list[np.ndarray]] = field(default_factory=dict)  # domain -> HWC uint8 crops
    extras: dict[str, bytes] = field(default_factory=dict)  # file name -> encoded image bytes
    manifest: dict = field(default_factory=dict)


def encode_crop(rgb: np.ndarray, jpeg_quality: int = 0) -> tuple[bytes, str]:
    """One crop as lossless WebP (effort 50, method 2: within 3 % of the slowest setting, 8x faster) or JPEG."""
    buf = io.BytesIO()
    if jpeg_quality:
        Image.fromarray(rgb).save(buf, "JPEG", quality=jpeg_quality, subsampling=0)
        return buf.getvalue(), "jpg"
    Image.fromarray(rgb).save(buf, "WEBP", lossless=True, quality=50, method=2)
    return buf.getvalue(), "webp"


def random_crops(
    folders: list[Path], size: int, seed: int, originals: bool = False
) -> Iterator[tuple[Path, int, int, np.ndarray | None]]:
    """Endless (source, x, y, crop): rounds over a seeded shuffle of the images at least ``size`` on each side.

    With ``originals``, a JPEG source comes once, whole, with no crop (None): its file is stored as it is.
    """
    gen = random.Random(seed)
    paths = [p for folder in folders for p in list_images(folder)]
    gen.shuffle(paths)
    usable = list(paths)
    while usable:
        kept = []
        for path in usable:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
            h, w = rgb.shape[:2]
            if min(h, w) < size:
                continue
            if originals and path.suffix.lower() in {".jpg", ".jpeg"}:
                yield path, 0, 0, None
                continue
            kept.append(path)
            y, x = gen.randrange(h - size + 1), gen.randrange(w - size + 1)
            yield path, x, y, rgb[y : y + size, x : x + size].copy()
        usable = kept


def _fixed_members(root: Path | None, extras: list[str], with_eval: bool) -> tuple[dict[str, bytes], dict]:
    """The Kodak bench crops and whole extra images, when the datasets are on this machine."""
    members: dict[str, bytes] = {}
    info: dict = {"eval": [], "extras": []}
    if root is None or not (root / "kodak").is_dir():
        return members, info
    for b in bench_images("kodak") if with_eval else []:
        name = f"eval/kodak/{Path(b.name).stem}.webp"
        members[name] = encode_crop(b.rgb)[0]
        info["eval"].append({"file": name, "source": f"kodak/{b.name}", "x": b.crop_x, "y": b.crop_y})
    for stem in extras:
        src = next((p for p in list_images(root / "kodak") if p.stem == stem), None)
        if src is None:
            raise SystemExit(f"extra image {stem!r} is not in {root / 'kodak'}")
        members[f"extra/{src.name}"] = src.read_bytes()
        info["extras"].append(f"extra/{src.name}")
    return members, info


def build_pack(
    out: Path,
    folders: list[Path],
    max_mib: float,
    size: int = 256,
    seed: int = 0,
    jpeg_quality: int = 0,
    extras: list[str] | None = None,
    with_eval: bool = True,
    originals: bool = False,
) -> dict:
    """Write the pack (atomically) and return its manifest; stops at the first crop that would pass ``max_mib``.

    ``originals``: JPEG sources go in whole and byte for byte (3.7 bits per pixel here, no new loss) instead of
    as crops; the PNG sources still give lossless crops.
    """
    fixed, info = _fixed_members(datasets_root(), list(DEFAULT_EXTRAS if extras is None else extras), with_eval)
    budget = int(max_mib * MIB) - sum(len(v) for v in fixed.values()) - 8192  # manifest head, zip directory end
    crops: list[dict] = []
    used = 0
    members: dict[str, bytes] = {}
    for src, x, y, rgb in random_crops(folders, size, seed, originals):
        data, ext = encode_crop(rgb, jpeg_quality) if rgb is not None else (src.read_bytes(), src.suffix[1:].lower())
        if used + len(data) + 256 > budget:  # 256: its manifest entry and zip headers
            break
        name = f"crops/{len(crops):06d}.{ext}"
        members[name] = data
        w, h = _image_size(src) if rgb is None else (size, size)
        crops.append({"file": name, "source": f"{src.parent.name}/{src.name}", "x": x, "y": y, "w": w, "h": h})
        used += len(data) + 256
    manifest = {
        "version": 1,
        "seed": seed,
        "size": size,
        "format": (f"jpeg-q{jpeg_quality}" if jpeg_quality else "webp-lossless") + ("+jpeg-originals" * originals),
        "folders": [str(f) for f in folders],
        "crops": crops,
        **info,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        # a fixed timestamp: the same seed and budget give the same bytes
        for name, data in {"manifest.json": json.dumps(manifest, indent=1).encode(), **fixed, **members}.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    tmp.replace(out)
    return manifest


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).copy()


def load_pack(path: Path) -> Pack:
    """Decode a pack: every crop as a uint8 CHW tensor (the form ``random_batch`` takes)."""
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        crops = [torch.from_numpy(_decode(zf.read(c["file"]))).permute(2, 0, 1).contiguous() for c in manifest["crops"]]
        eval_crops: dict[str, list[np.ndarray]] = {}
        for e in manifest.get("eval", []):
            eval_crops.setdefault(e["file"].split("/")[1], []).append(_decode(zf.read(e["file"])))
        extras = {Path(name).name: zf.read(name) for name in manifest.get("extras", [])}
    return Pack(crops, eval_crops, extras, manifest)


def extract_extras(path: Path, dest: Path) -> list[Path]:
    """Write the pack's whole extra images into ``dest`` (for the encode timing on the device)."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path) as zf:
        names = json.loads(zf.read("manifest.json")).get("extras", [])
        written = []
        for name in names:
            target = dest / Path(name).name
            target.write_bytes(zf.read(name))
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("var/device-carry/pack.zip"))
    ap.add_argument(
        "--data", type=Path, nargs="+", default=None, help="training folders (default: the default model's data)"
    )
    ap.add_argument("--max-mib", type=float, default=40.0, help="size of the whole pack, in MiB")
    ap.add_argument("--size", type=int, default=256, help="crop side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jpeg", type=int, default=0, metavar="Q", help="store JPEG 4:4:4 of quality Q, not lossless")
    ap.add_argument("--extras", nargs="*", default=None, help="whole Kodak images to add (default: kodim23)")
    ap.add_argument("--no-eval", action="store_true", help="leave out the Kodak bench crops")
    ap.add_argument("--originals", action="store_true", help="JPEG sources whole, byte for byte, not cropped")
    args = ap.parse_args(argv)
    root = datasets_root()
    folders = args.data or ([root / f for f in DEFAULT_TRAINING_FOLDERS] if root else [])
    if not folders or not all(f.is_dir() for f in folders):
        raise SystemExit("training photos not found: pass --data or put ../shared/datasets beside the repo")
    m = build_pack(
        args.out, folders, args.max_mib, args.size, args.seed, args.jpeg, args.extras, not args.no_eval, args.originals
    )
    mib = args.out.stat().st_size / MIB
    whole = sum(c["w"] != args.size or c["h"] != args.size for c in m["crops"])
    mpx = sum(c["w"] * c["h"] for c in m["crops"]) / 1e6
    print(
        f"wrote {args.out}: {len(m['crops']) - whole} crops of {args.size}x{args.size} and {whole} whole images "
        f"({m['format']}; {mpx:.1f} Mpixels), "
        f"{len(m['eval'])} eval crops, {len(m['extras'])} extra images; {mib:.2f} MiB"
    )


if __name__ == "__main__":
    main()
