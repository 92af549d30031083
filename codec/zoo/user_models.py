"""Checkpoints a user added with ``udic models add NAME PATH --arch ARCH`` (issue 15).

Adding one proves it works before it is kept: the file must load as ``ARCH`` (or as a gained
training checkpoint), and code and decode a test image. What is kept, in a small JSON file
(:data:`DEFAULT_MODELS_FILE`, next to the domain adapters), is the name, the absolute path, the
architecture, the training lambda (what the adaptive encode optimises for) and two hashes: the
file's sha256, checked whenever the entry is registered (a file changed since it was added is not
used under that name), and the weights hash that every bitstream made with it carries, so those
bitstreams decode only with the same weights (``Registry.for_bitstream``).

The codec reads no environment: the CLI registers these entries in its registry; a service is given
the same checkpoints by ``UDIC_CHECKPOINTS`` (:func:`service_entry` prints the entry).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from codec.zoo.errors import ModelError
from codec.zoo.registry import CheckpointSpec, Registry

#: the user models file when the caller names none (relative to the working directory, like the
#: default domain adapters folder ``var/storage/domains``)
DEFAULT_MODELS_FILE = Path("var/storage/models.json")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class UserModel:
    name: str
    path: str
    arch: str | None
    lmbda: float | None
    file_sha256: str
    weights_hash: str

    def spec(self) -> CheckpointSpec:
        return CheckpointSpec(self.name, Path(self.path), self.arch, self.lmbda)

    def service_entry(self) -> str:
        """This model as one ``UDIC_CHECKPOINTS`` entry."""
        entry = f"{self.name}={self.path}" + (f"@{self.arch}" if self.arch else "")
        return entry + (f"@{self.lmbda:g}" if self.arch and self.lmbda else "")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise ModelError(f"checkpoint {path} cannot be read ({exc.strerror or exc})") from None
    return h.hexdigest()


def read_models(file: Path = DEFAULT_MODELS_FILE) -> list[UserModel]:
    """The entries of a models file (none when it does not exist)."""
    if not file.exists():
        return []
    try:
        entries = json.loads(file.read_text())["models"]
        return [UserModel(**e) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"the models file {file} is unreadable ({exc})") from None


def _write_models(models: list[UserModel], file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"models": [asdict(m) for m in models]}, indent=2) + "\n")
    os.replace(tmp, file)


def _test_image() -> Image.Image:
    """A small image with edges and gradients (a flat one would code to almost nothing)."""
    yy, xx = np.mgrid[0:64, 0:96]
    rgb = np.stack([xx * 2.6, yy * 3.9, ((xx // 8 + yy // 8) % 2) * 200 + 20], axis=-1)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def check_codes(registry: Registry, name: str) -> bytes:
    """Code and decode the test image with model ``name``; the model's weights hash.

    The encode verifies its own file (a decode whose symbols must match), and the decode here goes
    through the public path again, so a checkpoint that loads but cannot code is refused."""
    from codec.coder import decode_image, encode_report  # the coder imports the registry: import late

    img = _test_image()
    res = encode_report(img, model=name, registry=registry)
    if decode_image(res.data, registry=registry).rgb.shape != (img.height, img.width, 3):
        raise ModelError(f"checkpoint {name} did not decode its test image to the right size")
    return registry.get(name).hash


def add_model(
    name: str, path: Path, arch: str | None, lmbda: float | None = None, file: Path = DEFAULT_MODELS_FILE
) -> UserModel:
    """Check the checkpoint (loads, codes and decodes a test image) and keep it under ``name``."""
    if lmbda is not None and not lmbda > 0:
        raise ModelError(f"the training lambda must be positive, got {lmbda}")
    path = path.expanduser().resolve()
    reg = Registry(capacity=1)
    reg.register_checkpoint(name, path, arch, lmbda)  # refuses built-in names
    weights = check_codes(reg, name)
    entry = UserModel(name, str(path), arch, lmbda, file_sha256(path), weights.hex())
    kept = [m for m in read_models(file) if m.name != name]
    _write_models([*kept, entry], file)
    return entry


def remove_model(name: str, file: Path = DEFAULT_MODELS_FILE) -> bool:
    """Forget ``name``; False if it was not there. Bitstreams made with it stop decoding here."""
    models = read_models(file)
    kept = [m for m in models if m.name != name]
    if len(kept) != len(models):
        _write_models(kept, file)
    return len(kept) != len(models)


def register_user_models(registry: Registry, file: Path = DEFAULT_MODELS_FILE) -> list[str]:
    """Register every kept model whose file is unchanged; the names of those that changed (skipped)."""
    changed = []
    for m in read_models(file):
        if not Path(m.path).exists() or file_sha256(Path(m.path)) != m.file_sha256:
            changed.append(m.name)
            continue
        registry.register_checkpoint(m.name, Path(m.path), m.arch, m.lmbda)
    return changed
