"""The one MP4 box walker: size 0 (to the end of the file), size 1 (64-bit), cut-off boxes."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from station.proof.c2pa_embed import count_fragments
from station.proof.verify import mp4_facts
from station.store.mp4box import Box, iter_boxes
from station.store.recovery import box_walk


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def large(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload


def to_end(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 0, kind) + payload


FTYP = box(b"ftyp", b"isom\0\0\2\0isomiso6")
MOOV = box(b"moov", b"\0" * 20)
FRAGMENT = box(b"moof", b"\1" * 24) + box(b"mdat", b"\2" * 40)


def walk(tmp_path: Path, blob: bytes) -> tuple[Path, list[Box]]:
    p = tmp_path / "f.mp4"
    p.write_bytes(blob)
    return p, list(iter_boxes(p))


def test_size_zero_box_extends_to_the_end_of_the_file(tmp_path: Path) -> None:
    blob = FTYP + MOOV + box(b"moof", b"\1" * 24) + to_end(b"mdat", b"\2" * 1000)
    p, boxes = walk(tmp_path, blob)
    assert [b.kind for b in boxes] == [b"ftyp", b"moov", b"moof", b"mdat"]
    last = boxes[-1]
    assert last.to_end and last.end == len(blob) and last.size == 1008
    # Every reader agrees: the file is whole, it has one fragment, recovery keeps all of it.
    assert mp4_facts(p).complete and mp4_facts(p).moofs == 1 and mp4_facts(p).boxes == 4
    assert count_fragments(p) == 1
    assert box_walk(p) == (len(blob), True)


def test_size_one_box_reads_its_64_bit_largesize(tmp_path: Path) -> None:
    blob = FTYP + MOOV + box(b"moof", b"\1" * 24) + large(b"mdat", b"\2" * 300) + FRAGMENT
    p, boxes = walk(tmp_path, blob)
    assert [(b.kind, b.size) for b in boxes][3] == (b"mdat", 316)
    assert boxes[-1].end == len(blob) and not any(b.to_end for b in boxes)
    assert mp4_facts(p).complete and count_fragments(p) == 2
    assert box_walk(p) == (len(blob), True)


@pytest.mark.parametrize(
    ("what", "tail"),
    [
        ("header cut inside the size field", b"\0\0\1"),
        ("header cut inside the type", b"\0\0\0\x40mo"),
        ("largesize cut off", struct.pack(">I4s", 1, b"mdat") + b"\0\0\0"),
        ("box runs past the end", box(b"moof", b"\1" * 24)[:-5]),
        ("largesize runs past the end", struct.pack(">I4sQ", 1, b"mdat", 10_000) + b"\2" * 50),
        ("size smaller than its header", struct.pack(">I4s", 4, b"free") + b"\0" * 8),
        ("largesize smaller than its header", struct.pack(">I4sQ", 1, b"free", 12) + b"\0" * 8),
        ("zero-filled tail (a power cut)", b"\0" * 3000),
    ],
)
def test_a_box_that_is_not_whole_ends_the_walk(tmp_path: Path, what: str, tail: bytes) -> None:
    whole = FTYP + MOOV + FRAGMENT
    p, boxes = walk(tmp_path, whole + tail)
    assert [b.kind for b in boxes] == [b"ftyp", b"moov", b"moof", b"mdat"], what
    assert boxes[-1].end == len(whole), what
    facts = mp4_facts(p)
    assert not facts.complete and facts.boxes == 4 and facts.moofs == 1, what
    assert box_walk(p) == (len(whole), True), what


def test_a_moof_without_its_mdat_is_not_a_consistent_end(tmp_path: Path) -> None:
    blob = FTYP + MOOV + FRAGMENT + box(b"moof", b"\1" * 24)
    p, boxes = walk(tmp_path, blob)
    assert len(boxes) == 5 and mp4_facts(p).complete  # every box is whole...
    assert box_walk(p) == (len(blob) - 32, True)  # ...but the last fragment has no data


def test_empty_and_tiny_files_have_no_boxes(tmp_path: Path) -> None:
    for blob in (b"", b"\0\0\0\x08fty"):
        p, boxes = walk(tmp_path, blob)
        assert boxes == [] and not mp4_facts(p).complete and box_walk(p) == (0, False)
