"""The ``.udic`` container: a small, versioned, self-describing file around the entropy-coded data.

Layout (all integers little-endian; ``varint`` is unsigned LEB128)::

    magic     4 bytes  b"UDIC"
    version   1 byte   FORMAT_VERSION
    fields    varint count, then per field: tag (1 byte), varint length, value
    sections  varint count, then per section: tag (1 byte), varint length, payload
    crc32     4 bytes  over every byte before it

Fields hold the coding options (model id and weights hash, image size, rate level, ...);
sections hold payloads (z, y, alpha plane, and later adapters). Both use the PNG rule for
extension: a tag below 0x80 is *ancillary* (a decoder that does not know it may skip it), a tag
of 0x80 or above is *critical* (a decoder that does not know it must refuse the file, because it
cannot reconstruct the image without it). New features add tags; old files keep decoding.

Parsing never trusts a length: every read is bounds-checked and every failure is a
:class:`BitstreamError` with a one-line message, before any byte reaches the entropy decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

from codec.imageio import ImageTooLargeError

MAGIC = b"UDIC"
FORMAT_VERSION = 1
MAX_FIELDS = 64
MAX_SECTIONS = 64


class BitstreamError(ValueError):
    """A file that cannot be decoded: not ours, truncated, altered, or needing what we lack."""

    kind = "invalid-bitstream"


class NotABitstreamError(BitstreamError):
    kind = "not-a-bitstream"


class TruncatedBitstreamError(BitstreamError):
    kind = "truncated-bitstream"


class ChecksumError(BitstreamError):
    kind = "checksum-mismatch"


class UnsupportedBitstreamError(BitstreamError):
    kind = "unsupported-bitstream"


class BitstreamTooLargeError(BitstreamError, ImageTooLargeError):
    """A bitstream claiming an image above the decoder's pixel limit (padded area, as for encoding).

    Both a bitstream error and the image-too-large error: callers that map either to an answer
    (the API's 4xx problem, the CLI's exit 2) do the right thing without knowing this class."""

    kind = "image-too-large"


class Field(IntEnum):
    """Header fields. < 0x80 ancillary, >= 0x80 critical."""

    ENCODER = 0x01  # utf-8 name/version of the encoder that wrote the file (informational)
    LAMBDA = 0x02  # float32, the RD trade-off the encoder aimed at (informational)
    SYMBOLS_HASH = 0x03  # 4 bytes, BLAKE2b of the coded integer symbols; checked when present
    TILING = 0x04  # u16 tile, u8 halo (latent units): the transforms ran in tiles (codec.tiling)
    MODEL_ID = 0x80  # utf-8, registry name of the base model
    MODEL_HASH = 0x81  # 8 bytes, hash of the weights and probability tables
    IMAGE_SIZE = 0x82  # u32 width, u32 height
    LEVEL = 0x83  # float32 rate level (gained models) or u8 quality (zoo models): see codec.zoo
    COLOR = 0x84  # u8: 0 RGB, 1 grayscale source; alpha is a section
    DOMAIN_ID = 0x85  # utf-8 id of the domain adapter the decoder must apply (codec.domains)
    DOMAIN_HASH = 0x86  # 8 bytes, hash of that adapter's decoder-side weights
    QSTEP_Y = 0x87  # i8 k: y coded with quantisation step 2**(k/16), |k| <= 48 (codec.adaptation.qstep)
    QSTEP_Z = 0x88  # u8 i < 7: z coded with quantisation step 2**((i-3)/2) (codec.adaptation.zstep)


class Section(IntEnum):
    """Payload sections. < 0x80 ancillary, >= 0x80 critical."""

    Z = 0x80  # entropy-coded hyper-latent
    Y = 0x81  # entropy-coded latent
    ALPHA = 0x82  # 8-bit alpha plane as a PNG, lossless
    ADAPTERS = 0x83  # per-image decoder adapters: layout + rANS-coded weights (codec.adaptation)
    OMP = 0x84  # per-image channel multipliers, 8-bit (the OMP baseline)


def _write_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varint must be non-negative")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


class _Reader:
    def __init__(self, data: bytes, end: int):
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise TruncatedBitstreamError(f"bitstream is truncated (while reading {what})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self, what: str) -> int:
        value, shift = 0, 0
        while True:
            (byte,) = self.take(1, what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 35:
                raise BitstreamError(f"bitstream is corrupt (oversized length in {what})")


@dataclass
class Container:
    """Decoded view of a ``.udic`` file: raw field values and section payloads by tag."""

    fields: dict[int, bytes] = field(default_factory=dict)
    sections: dict[int, bytes] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    # ---- typed accessors -------------------------------------------------------------
    def set_str(self, tag: Field, value: str) -> None:
        self.fields[tag] = value.encode("utf-8")

    def get_str(self, tag: Field) -> str:
        try:
            return self.require(tag).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BitstreamError(f"bitstream is corrupt (field {tag.name} is not text)") from exc

    def set_f32(self, tag: Field, value: float) -> None:
        self.fields[tag] = struct.pack("<f", value)

    def get_f32(self, tag: Field) -> float:
        raw = self.require(tag)
        if len(raw) != 4:
            raise BitstreamError(f"bitstream is corrupt (field {tag.name} has {len(raw)} bytes)")
        return struct.unpack("<f", raw)[0]

    def require(self, tag: Field) -> bytes:
        if tag not in self.fields:
            raise BitstreamError(f"bitstream is corrupt (missing field {tag.name})")
        return self.fields[tag]

    def image_size(self) -> tuple[int, int]:
        raw = self.require(Field.IMAGE_SIZE)
        if len(raw) != 8:
            raise BitstreamError("bitstream is corrupt (bad IMAGE_SIZE field)")
        w, h = struct.unpack("<II", raw)
        if w == 0 or h == 0:
            raise BitstreamError("bitstream is corrupt (zero image size)")
        return w, h

    def set_image_size(self, width: int, height: int) -> None:
        self.fields[Field.IMAGE_SIZE] = struct.pack("<II", width, height)

    def section(self, tag: Section) -> bytes:
        if tag not in self.sections:
            raise BitstreamError(f"bitstream is corrupt (missing section {tag.name})")
        return self.sections[tag]

    # ---- serialisation ---------------------------------------------------------------
    def to_bytes(self) -> bytes:
        out = bytearray(MAGIC)
        out.append(self.version)
        for table in (self.fields, self.sections):
            _write_varint(out, len(table))
            for tag in sorted(table):
                out.append(int(tag))
                _write_varint(out, len(table[tag]))
                out += table[tag]
        out += struct.pack("<I", zlib.crc32(out))
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Container:
        data = bytes(data)
        if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
            raise NotABitstreamError("not a UDIC bitstream (wrong magic bytes)")
        if len(data) < len(MAGIC) + 1 + 4:
            raise TruncatedBitstreamError("bitstream is truncated (shorter than its header)")
        version = data[len(MAGIC)]
        if version > FORMAT_VERSION or version == 0:
            raise UnsupportedBitstreamError(
                f"bitstream format version {version} is not supported (this decoder reads up to {FORMAT_VERSION})"
            )
        body_end = len(data) - 4
        (stored_crc,) = struct.unpack("<I", data[body_end:])
        reader = _Reader(data, body_end)
        reader.pos = len(MAGIC) + 1
        try:
            tables = []
            for name, known, limit in (("field", Field, MAX_FIELDS), ("section", Section, MAX_SECTIONS)):
                count = reader.varint(f"{name} count")
                if count > limit:
                    raise BitstreamError(f"bitstream is corrupt ({count} {name}s)")
                table: dict[int, bytes] = {}
                for _ in range(count):
                    (tag,) = reader.take(1, f"{name} tag")
                    length = reader.varint(f"{name} length")
                    value = reader.take(length, f"{name} 0x{tag:02x}")
                    if tag in table:
                        raise BitstreamError(f"bitstream is corrupt (repeated {name} 0x{tag:02x})")
                    if tag not in known._value2member_map_ and tag >= 0x80:
                        raise UnsupportedBitstreamError(
                            f"bitstream needs a feature this decoder does not have ({name} 0x{tag:02x}); upgrade udic"
                        )
                    table[tag] = value
                tables.append(table)
            if reader.pos != body_end:
                raise BitstreamError("bitstream is corrupt (trailing bytes after the last section)")
        except BitstreamError:
            # a bad checksum explains any structural error best: report that first
            if zlib.crc32(data[:body_end]) != stored_crc:
                raise ChecksumError("bitstream is corrupt or truncated (checksum mismatch)") from None
            raise
        if zlib.crc32(data[:body_end]) != stored_crc:
            raise ChecksumError("bitstream is corrupt or truncated (checksum mismatch)")
        return cls(fields=tables[0], sections=tables[1], version=version)
