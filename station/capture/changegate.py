"""Change gating for the camera decoder: look again only where the picture changed."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, x1/y1 exclusive

SCALE = 8  # thumbnail pixel = SCALE x SCALE frame pixels
# Grey levels a thumbnail pixel must change by. A thumbnail pixel averages 64 frame pixels,
# so sensor noise (sigma 2-4 per pixel) moves it by well under one level; a hand, a box or a
# card entering moves it by tens.
THRESHOLD = 8
MARGIN = 48  # frame pixels around a changed area: the rest of a half-changed card
WHOLE_FRACTION = 0.6  # when the boxes cover more than this much of the frame, decode it all
MAX_BOXES = 6
HOLD_S = 1.0  # keep looking where a code was read for this long after its last read
# A box with fewer changed cells than this is "settled": the hand has let go of the label (a
# little drift moves a photo's edges, not the averages of its inner cells).
SETTLED_FRACTION = 0.25


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A 1/SCALE-size grey copy of a BGR or grey frame (int16, for signed differences)."""
    h, w = image.shape[:2]
    small = cv2.resize(
        image, (max(1, w // SCALE), max(1, h // SCALE)), interpolation=cv2.INTER_AREA
    )
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return small.astype(np.int16)


def changed_cells(
    reference: np.ndarray, thumb: np.ndarray, threshold: int = THRESHOLD
) -> list[Box]:
    """Boxes, in thumbnail cells, around the areas where ``thumb`` differs from ``reference``."""
    mask = (np.abs(thumb - reference) > threshold).astype(np.uint8)
    if not mask.any():
        return []
    # Join the pieces of one moving object (a hand's fingers, a card's bars).
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return [
        (int(x), int(y), int(x + w), int(y + h))
        for x, y, w, h, _area in stats[1:n]  # label 0 is the unchanged background
    ]


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def merge_boxes(boxes: Iterable[Box]) -> list[Box]:
    """Overlapping boxes joined into their bounding boxes until none overlap."""
    out = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                if _overlap(out[i], out[j]):
                    a, b = out[i], out.pop(j)
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    merged = True
                    break
            if merged:
                break
    return sorted(out)


def plan_regions(
    cells: Sequence[Box],
    hot: Sequence[Box],
    width: int,
    height: int,
    *,
    margin: int = MARGIN,
) -> list[Box] | None:
    """Where to decode: frame boxes around changed ``cells`` and around ``hot`` boxes (where
    codes were read last time), merged; None means the whole frame (the boxes would cover
    most of it, or be too many to be cheaper); ``[]`` means nothing needs decoding."""
    boxes = [
        (
            max(0, x0 * SCALE - margin),
            max(0, y0 * SCALE - margin),
            min(width, x1 * SCALE + margin),
            min(height, y1 * SCALE + margin),
        )
        for x0, y0, x1, y1 in cells
    ]
    boxes += [(max(0, x0), max(0, y0), min(width, x1), min(height, y1)) for x0, y0, x1, y1 in hot]
    boxes = merge_boxes(b for b in boxes if b[2] > b[0] and b[3] > b[1])
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes)
    if len(boxes) > MAX_BOXES or area > WHOLE_FRACTION * width * height:
        return None
    return boxes


def code_box(points: Sequence[tuple[int, int]], width: int, height: int) -> Box:
    """A generous box around a read code's corner points: a 1-D code's points may be just
    its scan line, and the next look must see the whole symbol and its quiet zone."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    pad = max(MARGIN, (max(max(xs) - min(xs), max(ys) - min(ys))) // 2)
    return (
        max(0, min(xs) - pad),
        max(0, min(ys) - pad),
        min(width, max(xs) + pad + 1),
        min(height, max(ys) + pad + 1),
    )


class ChangeGate:
    """Decides, frame by frame, which parts of a camera frame the barcode decoder must read.

    A code that is already in view and unchanged has been read (or not) already; reading it
    again finds nothing new. So each frame is compared, at 1/8 size, with what the decoder
    last looked at, and only the changed areas (plus a margin), plus the boxes of the codes
    read in the last ``hold_s`` seconds (so a label lying in view keeps being seen and stays
    one debounced scan, even if one read misses), are decoded. Every ``full_every_s`` seconds
    of frame time the whole frame is decoded anyway, which bounds what any gating mistake can
    cost to that delay.

    Not thread-safe: one ScanWorker thread owns it. ``plan`` then ``done`` per decoded frame.
    """

    def __init__(
        self, full_every_s: float = 2.0, threshold: int = THRESHOLD, hold_s: float = HOLD_S
    ) -> None:
        if full_every_s <= 0 or hold_s < 0:
            raise ValueError("full_every_s must be positive and hold_s not negative")
        self.full_every_s = full_every_s
        self.threshold = threshold
        self.hold_s = hold_s
        self._reference: np.ndarray | None = None
        self._thumb: np.ndarray | None = None
        self._last_full = -np.inf
        self._hot: list[tuple[Box, float]] = []  # where a code was read, and when last
        self._located: list[tuple[Box, float]] = []  # code-like but unread, and since when
        self._moved: np.ndarray | None = None  # thumbnail cells changed since the last look

    def plan(self, image: np.ndarray, t: float) -> list[Box] | None:
        """Boxes of ``image`` to decode, None for the whole frame, ``[]`` for none of it."""
        h, w = image.shape[:2]
        thumb = thumbnail(image)
        self._thumb = thumb
        ref = self._reference
        if ref is None or ref.shape != thumb.shape:
            return None
        # Due for a full look, or the timeline went back (a new camera session).
        if not 0 <= t - self._last_full < self.full_every_s:
            return None
        hot = [box for box, seen in self._hot + self._located if 0 <= t - seen < self.hold_s]
        self._moved = np.abs(thumb - ref) > self.threshold
        return plan_regions(changed_cells(ref, thumb, self.threshold), hot, w, h)

    def settled(self, box: Box, t: float) -> bool:
        """Whether ``box`` (of the frame just planned) overlaps a place where a code was read
        or located (looked like a code, unread) in the last ``hold_s``, and has hardly
        changed since it was last looked at: a code lying still, worth a dearer decode."""
        if not any(
            0 <= t - seen < self.hold_s and _overlap(box, b)
            for b, seen in self._hot + self._located
        ):
            return False
        moved = self._moved
        if moved is None:
            return True
        x0, y0, x1, y1 = box
        cells = moved[y0 // SCALE : -(-y1 // SCALE), x0 // SCALE : -(-x1 // SCALE)]
        return cells.size == 0 or float(cells.mean()) < SETTLED_FRACTION

    def done(
        self,
        boxes: list[Box] | None,
        t: float,
        found: Iterable[Sequence[tuple[int, int]]],
        width: int,
        height: int,
        located: Iterable[Box] = (),
    ) -> None:
        """Record what was decoded (``boxes`` as returned by ``plan``) and the corner points
        of the codes read, in frame coordinates. ``located``: decoded boxes that look like a
        code but gave no read; they are looked at again for ``hold_s`` from the first time
        (a code just put down is read on a later, sharper frame), never longer, so an
        unreadable code lying in view does not cost a decode for ever."""
        thumb = self._thumb
        if thumb is None:
            raise RuntimeError("ChangeGate.done() without plan()")
        if boxes is None or self._reference is None or self._reference.shape != thumb.shape:
            self._reference = thumb.copy()
            self._last_full = t
        else:
            # Only what was looked at becomes the new reference: a slow change elsewhere
            # keeps adding up until it crosses the threshold.
            for x0, y0, x1, y1 in boxes:
                # cells wholly inside the box; a box reaching the frame edge takes the edge cells
                cx0, cy0 = -(-x0 // SCALE), -(-y0 // SCALE)
                cx1 = thumb.shape[1] if x1 >= width else x1 // SCALE
                cy1 = thumb.shape[0] if y1 >= height else y1 // SCALE
                self._reference[cy0:cy1, cx0:cx1] = thumb[cy0:cy1, cx0:cx1]
        read = [(code_box(p, width, height), t) for p in found if p]
        # A box where a code was read stays in the plan for hold_s after its last read, so
        # one missed read (a hand passing, noise) does not stop the looking; a box a new
        # read overlaps is replaced by it.
        kept = [
            (box, seen)
            for box, seen in self._hot
            if 0 <= t - seen < self.hold_s and not any(_overlap(box, b) for b, _ in read)
        ]
        self._hot = read + kept
        fresh = [b for b in located if not any(_overlap(b, box) for box, _ in self._located)]
        # A read inside a located box does not end it: a 1-D read's points may be a sliver
        # of the symbol, and the next looks need all of it.
        self._located = [
            (box, since) for box, since in self._located if 0 <= t - since < self.hold_s
        ] + [(b, t) for b in fresh]
        self._thumb = None


__all__ = [
    "ChangeGate",
    "changed_cells",
    "code_box",
    "merge_boxes",
    "plan_regions",
    "thumbnail",
]
