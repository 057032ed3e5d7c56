"""The one walker over an MP4 file's top-level ISO-BMFF boxes (headers only, nothing decoded)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Box:
    """One whole top-level box: its type, where it starts and its size with the header."""

    kind: bytes
    start: int
    size: int
    to_end: bool = False  # the header said size 0: the box runs to the end of the file

    @property
    def end(self) -> int:
        return self.start + self.size


def _is_type(kind: bytes) -> bool:
    # A box type is a four-character code. Zeros are not one: a power cut can leave a
    # zero-filled tail, whose size field 0 would otherwise read as "the rest of the file".
    return all(0x20 <= b <= 0x7E for b in kind)


def iter_boxes(path: Path) -> Iterator[Box]:
    """The whole top-level boxes of ``path`` in order, stopping at the first that is not whole.

    ISO/IEC 14496-12 4.2: size 1 means a 64-bit ``largesize`` follows the type; size 0 means the
    box extends to the end of the file. A box whose header is cut off, whose size is smaller
    than its header, which runs past the end of the file, or whose type is not a
    four-character code ends the walk: the file is whole when the last box ends at its size.
    """
    size = path.stat().st_size
    pos = 0
    with path.open("rb") as f:
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            box, kind = struct.unpack(">I4s", head[:8])
            header, to_end = 8, False
            if box == 1:
                if len(head) < 16:
                    return
                box, header = struct.unpack(">Q", head[8:16])[0], 16
            elif box == 0:
                box, to_end = size - pos, True
            if box < header or pos + box > size or not _is_type(kind):
                return
            yield Box(kind, pos, box, to_end)
            pos += box


__all__ = ["Box", "iter_boxes"]
