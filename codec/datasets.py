"""Where the shared images are, and the standard ``bench-256`` subset.

The datasets live outside the repo (``../shared/datasets`` next to the checkout). Everything that
needs them asks here and skips cleanly when they are absent.

Only offline tools use them (tests, benchmarks, training), never the codec's coding paths or the
service, so their location is not a service setting: callers may pass the folder explicitly, and
without it the documented default applies (``UDIC_DATASETS``, then ``../shared/datasets``). This
module is the one place in the codec that reads an environment variable, for that reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DOMAINS: tuple[str, ...] = ("kodak", "line", "comic", "vector", "screen", "pixel")
OUT_OF_DOMAIN: tuple[str, ...] = DOMAINS[1:]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


#: training folders, relative to the datasets root (never an evaluation folder)
PHOTO_FOLDERS = ("natural-train", "natural-train-extra")
GRAPHICS_FOLDERS = tuple(f"graphics-train/{kind}" for kind in ("clipart", "pixel", "screen", "comic"))
#: what the default model trains on: the shipped default is a universal base (photos and
#: graphics; see its model card), so training continues on the same mix unless told otherwise
DEFAULT_TRAINING_FOLDERS = PHOTO_FOLDERS + GRAPHICS_FOLDERS

#: the environment variable that moves the datasets for test and benchmark runs
DATASETS_ENV = "UDIC_DATASETS"


def datasets_root(root: Path | str | None = None) -> Path | None:
    """The shared datasets folder, or None when it is not on this machine.

    ``root`` names the folder; without it: ``$UDIC_DATASETS``, then ``../shared/datasets`` beside
    the checkout or beside the working directory (tests and benchmarks have no settings object).
    """
    if root is not None:
        return Path(root) if Path(root).is_dir() else None
    env = os.environ.get(DATASETS_ENV)
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared" / "datasets", Path.cwd().parent / "shared" / "datasets"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name (the order bench-256 is defined in)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def most_detailed_window(rgb: np.ndarray, size: int = 256, stride: int = 32) -> tuple[int, int]:
    """Top-left (x, y) of the window with the largest sum of absolute luma differences.

    The bench-256 rule of ../shared/datasets/README.md: corners on a ``stride`` grid, horizontal
    and vertical differences inside the window only, ties to the smallest y then smallest x.
    """
    h, w = rgb.shape[:2]
    if h <= size and w <= size:
        return 0, 0
    lum = luma(rgb)
    dx = np.abs(np.diff(lum, axis=1))  # h x (w-1)
    dy = np.abs(np.diff(lum, axis=0))  # (h-1) x w
    # integral images for O(1) window sums
    ix = np.pad(dx.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    iy = np.pad(dy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def box(ii: np.ndarray, y0: int, x0: int, hh: int, ww: int) -> float:
        return float(ii[y0 + hh, x0 + ww] - ii[y0, x0 + ww] - ii[y0 + hh, x0] + ii[y0, x0])

    best, best_xy = -1.0, (0, 0)
    for y in range(0, h - size + 1, stride):
        for x in range(0, w - size + 1, stride):
            s = box(ix, y, x, size, size - 1) + box(iy, y, x, size - 1, size)
            if s > best:
                best, best_xy = s, (x, y)
    return best_xy


@dataclass(frozen=True)
class BenchImage:
    domain: str
    name: str
    crop_x: int
    crop_y: int
    rgb: np.ndarray  # H x W x 3 uint8


def bench_images(domain: str, count: int = 6, size: int = 256, root: Path | str | None = None) -> list[BenchImage]:
    """The bench-256 crops of one domain: first ``count`` files, most detailed window each
    (``root``: the datasets folder, as for :func:`datasets_root`)."""
    root = datasets_root(root)
    if root is None:
        raise FileNotFoundError("../shared/datasets is not on this machine (set UDIC_DATASETS)")
    return [bench_crop(domain, path, size) for path in list_images(root / domain)[:count]]


def bench_crop(domain: str, path: Path, size: int = 256) -> BenchImage:
    """One image cropped by the bench-256 rule (the most detailed ``size`` x ``size`` window)."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    x, y = most_detailed_window(rgb, size)
    return BenchImage(domain, path.name, x, y, rgb[y : y + size, x : x + size].copy())
