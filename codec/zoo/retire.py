"""Keep the current embedded weights as a previous version, before new ones replace them.

Run it *before* exporting retrained weights over ``codec/zoo/weights/default.pt``, so bitstreams
made with today's weights keep decoding (:mod:`codec.zoo.versions`)::

    python -m codec.zoo.retire

It copies ``default.pt`` to ``weights/previous/<its hash16>.pt`` and checks that the copy loads with
that hash. Running it twice is harmless.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from codec.zoo.errors import ModelUnavailableError
from codec.zoo.loaders import load_gained_file
from codec.zoo.registry import DEFAULT_MODEL, WEIGHTS_DIR
from codec.zoo.versions import PREVIOUS_DIR, PreviousWeights


def retire(weights: Path = WEIGHTS_DIR / "default.pt", previous_dir: Path = PREVIOUS_DIR) -> tuple[str, Path]:
    """(hash, kept file): ``weights`` copied into ``previous_dir`` under its weights hash.

    The hash is computed from the loaded model (what bitstreams carry), not trusted from anywhere;
    the copy is written under a temporary name and loaded back before it takes its real name.
    """
    weights_hash = load_gained_file(weights, DEFAULT_MODEL).hash.hex()
    dst = previous_dir / f"{weights_hash}.pt"
    if dst.is_file():
        PreviousWeights(previous_dir).load(weights_hash)  # already kept: still check it
        return weights_hash, dst
    previous_dir.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    shutil.copyfile(weights, tmp)
    copied = load_gained_file(tmp, DEFAULT_MODEL).hash.hex()
    if copied != weights_hash:
        tmp.unlink()
        raise ModelUnavailableError(f"the copy of {weights} hashes to {copied}, not {weights_hash}")
    os.replace(tmp, dst)
    return weights_hash, dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=WEIGHTS_DIR / "default.pt", help="the weights to keep")
    ap.add_argument("--previous-dir", type=Path, default=PREVIOUS_DIR, help="the folder of kept versions")
    args = ap.parse_args()
    weights_hash, dst = retire(args.weights, args.previous_dir)
    print(f"kept {args.weights} as {DEFAULT_MODEL}@{weights_hash} ({dst})")


if __name__ == "__main__":
    main()
