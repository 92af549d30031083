"""The container: round trip, extension rules, and every kind of damage refused clearly."""

from __future__ import annotations

import struct
import zlib

import pytest

from codec.bitstream import (
    BitstreamError,
    ChecksumError,
    Container,
    Field,
    NotABitstreamError,
    Section,
    TruncatedBitstreamError,
    UnsupportedBitstreamError,
)


def sample() -> Container:
    c = Container()
    c.set_str(Field.MODEL_ID, "default")
    c.fields[Field.MODEL_HASH] = bytes(range(8))
    c.set_image_size(768, 512)
    c.set_f32(Field.LEVEL, 2.5)
    c.sections[Section.Z] = b"z" * 300
    c.sections[Section.Y] = bytes(range(256)) * 20
    return c


def test_round_trip_preserves_fields_and_sections() -> None:
    c = sample()
    back = Container.from_bytes(c.to_bytes())
    assert back.fields == c.fields
    assert back.sections == c.sections
    assert back.image_size() == (768, 512)
    assert back.get_f32(Field.LEVEL) == 2.5
    assert back.get_str(Field.MODEL_ID) == "default"


def test_header_is_compact() -> None:
    c = sample()
    payload = sum(len(v) for v in c.sections.values())
    assert len(c.to_bytes()) - payload <= 56  # 52 today: magic, version, 4 fields, 2 lengths, crc


def _with_extra(tag: int, where: str) -> bytes:
    c = sample()
    (c.fields if where == "field" else c.sections)[tag] = b"future"
    return c.to_bytes()


def test_unknown_ancillary_tags_are_skipped() -> None:
    for where in ("field", "section"):
        back = Container.from_bytes(_with_extra(0x7E, where))
        assert back.image_size() == (768, 512)


def test_unknown_critical_tags_are_refused() -> None:
    for where in ("field", "section"):
        with pytest.raises(UnsupportedBitstreamError, match="upgrade"):
            Container.from_bytes(_with_extra(0xFE, where))


def test_every_truncation_is_refused() -> None:
    data = sample().to_bytes()
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            Container.from_bytes(data[:n])


def test_every_single_bit_flip_is_refused() -> None:
    data = sample().to_bytes()
    for i in range(len(data)):
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                Container.from_bytes(bytes(bad))


def test_foreign_files_are_refused() -> None:
    for junk in (b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, b"GIF89a", b"UDI"):
        with pytest.raises(NotABitstreamError):
            Container.from_bytes(junk)


def test_newer_version_is_refused_by_name() -> None:
    data = bytearray(sample().to_bytes())
    data[4] = 9
    with pytest.raises(UnsupportedBitstreamError, match="version 9"):
        Container.from_bytes(bytes(data))


def test_valid_checksum_over_bad_structure_is_still_refused() -> None:
    # a crafted file: huge section length, correct CRC -> structural error, not a crash
    body = bytearray(b"UDIC\x01")
    body += b"\x00"  # no fields
    body += b"\x01" + bytes([Section.Y]) + b"\xff\xff\xff\x7f"  # section claiming 268 MB
    body += struct.pack("<I", zlib.crc32(body))
    with pytest.raises(TruncatedBitstreamError):
        Container.from_bytes(bytes(body))
    with pytest.raises(ChecksumError):
        Container.from_bytes(bytes(body[:-1]) + b"\x00")
