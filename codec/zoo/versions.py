"""Previous versions of the embedded model, so bitstreams made with older weights keep decoding.

Every bitstream names its model *and* the hash of its weights (:mod:`codec.zoo.hashing`). When the
embedded ``default`` is retrained its hash changes, and files made before would be refused. So the
weights a release replaces are kept, one file per version, in ``codec/zoo/weights/previous/``
(``<hash16>.pt``, the format of ``default.pt``; :mod:`codec.zoo.retire` puts them there). A version
is named ``default@<hash16>``: it can be encoded with by that name, and a bitstream naming
``default`` with that hash decodes with it. A hash that is neither current nor kept is refused with
a message that names the version the file needs (:func:`version_mismatch`).

Previous versions write ``default`` as their model name, as the release that shipped them did, so a
file encoded with ``default@<hash>`` is the file that release would have written.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from codec.zoo.base import BaseModel
from codec.zoo.errors import ModelMismatchError, ModelUnavailableError, UnknownModelError
from codec.zoo.loaders import load_gained_file

__all__ = [
    "PREVIOUS_DIR",
    "VERSIONED_MODEL",
    "PreviousWeights",
    "split_version",
    "version_mismatch",
    "versioned_name",
]

#: the folder of retired embedded weights shipped with the package
PREVIOUS_DIR = Path(__file__).resolve().parent / "weights" / "previous"
#: the one model with kept versions (the embedded one; ``codec.zoo.registry.DEFAULT_MODEL``)
VERSIONED_MODEL = "default"
_HASH = re.compile(r"[0-9a-f]{16}")


def versioned_name(weights_hash: str | bytes) -> str:
    """``default@<hash16>`` for a weights hash (bytes or hex)."""
    h = weights_hash.hex() if isinstance(weights_hash, bytes) else weights_hash
    return f"{VERSIONED_MODEL}@{h}"


def split_version(name: str) -> str | None:
    """The hash of a ``default@<hash16>`` name, None for any other name.

    Only names of the embedded model are versions: other names may contain ``@`` (checkpoints).
    A malformed hash is an unknown model rather than a name that silently means something else.
    """
    prefix = f"{VERSIONED_MODEL}@"
    if not name.startswith(prefix):
        return None
    h = name[len(prefix) :]
    if not _HASH.fullmatch(h):
        raise UnknownModelError(f"unknown model {name!r}: a version is {prefix}<16 lowercase hex digits>")
    return h


class PreviousWeights:
    """The retired weights in one folder: ``<hash16>.pt`` files, each checked against its name on load."""

    def __init__(self, folder: Path):
        self.folder = folder

    def hashes(self) -> list[str]:
        """Hashes of the kept versions (sorted); a missing folder holds none."""
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.pt") if _HASH.fullmatch(p.stem))

    def names(self) -> list[str]:
        return [versioned_name(h) for h in self.hashes()]

    def has(self, weights_hash: str) -> bool:
        return (self.folder / f"{weights_hash}.pt").is_file()

    def load(self, weights_hash: str) -> BaseModel:
        """The kept version, named ``default`` (what its bitstreams say); its weights must hash to
        its file name, else a decode would pass the hash check with the wrong weights."""
        path = self.folder / f"{weights_hash}.pt"
        if not path.is_file():
            raise UnknownModelError(
                f"unknown model {versioned_name(weights_hash)!r}; kept versions: {', '.join(self.names()) or 'none'}"
            )
        model = load_gained_file(path, VERSIONED_MODEL)
        if model.hash.hex() != weights_hash:
            raise ModelUnavailableError(f"{path} holds weights with hash {model.hash.hex()}, not the one its name says")
        description = f"{model.description} (previous version {weights_hash})".lstrip()
        return dataclasses.replace(model, description=description)


def version_mismatch(name: str, file_hash: bytes, current_hash: bytes, previous: list[str]) -> ModelMismatchError:
    """The refusal of a bitstream whose weights this decoder lacks, naming the version it needs."""
    if name != VERSIONED_MODEL:
        return ModelMismatchError(
            f"bitstream was made with different weights for model {name!r} "
            f"(file {file_hash.hex()}, here {current_hash.hex()})"
        )
    kept = ", ".join(versioned_name(h) for h in previous) or "none"
    return ModelMismatchError(
        f"this file was made with {versioned_name(file_hash)}, different weights from this server's "
        f"{versioned_name(current_hash)} (previous versions here: {kept}); "
        f"decode it where {versioned_name(file_hash)} is available"
    )
