"""Read confirmation: a camera read becomes a scan only after independent looks agree."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from station.capture.frames import Box

DEFAULT_LOOKS = 2
DEFAULT_WINDOW_S = 1.5


@dataclass(frozen=True, slots=True)
class Look:
    """One decoded symbol in one frame.

    ``heavy``: read by a model-based or heavily preprocessed stage (deconvolution, the blurry
    EAN model, turned or sharpened enlargements), which can make a plausible code out of
    noise. ``box``: the symbol's extent in frame pixels (None when unknown).
    """

    text: str
    symbology: str
    heavy: bool = False
    box: Box | None = None


@dataclass(slots=True)
class _Seen:
    frames: dict[float, bool] = field(default_factory=dict)  # frame time -> heavy only
    boxes: list[tuple[float, Box]] = field(default_factory=list)
    confirmed: bool = False
    vetoed: bool = False


def box_of(points: Sequence[tuple[int, int]]) -> Box | None:
    """The bounding box of a detection's corner points (None for no points)."""
    if not points:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (min(xs), min(ys), max(xs) + 1, max(ys) + 1)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class ReadConfirmer:
    """Decides which camera reads are trustworthy enough to become scans.

    A text is *confirmed* once it was read in ``looks`` different frames within ``window_s``
    seconds of frame time, at least one of them by a plain (not heavy) stage; reads by heavy
    stages alone need one look more, so a model or a deconvolution never starts a clip on a
    single read, whatever ``looks`` is. Where two different texts were read at overlapping
    places within the window (one label giving two numbers: a misread), a text needs ``looks``
    more looks than its rival before it counts. Once confirmed, each further read of the text
    is passed on (the debounce downstream keeps a label lying in view one scan); a text not
    read for ``window_s`` starts from nothing again.

    Pure and deterministic: no clocks (times are the frames' ``t``), no threads; one
    ScanWorker thread owns an instance. ``feed`` takes frames in time order.
    """

    def __init__(self, looks: int = DEFAULT_LOOKS, window_s: float = DEFAULT_WINDOW_S) -> None:
        if looks < 1 or window_s <= 0:
            raise ValueError("looks must be at least 1 and window_s positive")
        self.looks = looks
        self.window_s = window_s
        self._seen: dict[str, _Seen] = {}
        self._last_t = float("-inf")

    def feed(
        self,
        t: float,
        reads: Sequence[Look],
        check: Callable[[Look], bool] | None = None,
        earlier: Sequence[tuple[float, Look]] = (),
    ) -> list[Look]:
        """Record the reads of the frame at time ``t``; return those that are confirmed now.

        A frame is known by its time: feeding the same frame twice is still one look.
        ``check`` is asked once, when a text has enough looks; if it says no, the text is
        vetoed for as long as it keeps being read (and ``window_s`` after).
        ``earlier``: reads of earlier frames that arrive only now (frame time, read), from a
        background decode of crops of those frames; each counts as a look of its own frame,
        if that frame is not older than ``window_s``."""
        if t < self._last_t:
            self._seen.clear()  # the timeline went back (a new camera session): start afresh
        self._last_t = t
        self._expire(t)
        late = [(u, r) for u, r in earlier if t - self.window_s < u <= t]
        for u, r in [*late, *((t, r) for r in reads)]:
            seen = self._seen.setdefault(r.text, _Seen())
            seen.frames[u] = r.heavy and seen.frames.get(u, True)
            if r.box is not None:
                seen.boxes.append((u, r.box))
        out: list[Look] = []
        done: set[str] = set()
        for r in [*reads, *(r for _u, r in late)]:
            if r.text in done:
                continue
            done.add(r.text)
            seen = self._seen[r.text]
            if not seen.confirmed and not seen.vetoed and self._enough(r.text, seen):
                seen.confirmed = check is None or check(r)
                seen.vetoed = not seen.confirmed
            if seen.confirmed:
                out.append(r)
        return out

    def first_look(self, text: str) -> float | None:
        """The frame time of the earliest look at ``text`` within the window (None: none): for
        a text confirmed now, when the camera first read it in this sighting."""
        seen = self._seen.get(text)
        return min(seen.frames) if seen is not None and seen.frames else None

    def _enough(self, text: str, seen: _Seen) -> bool:
        n = len(seen.frames)
        plain = not all(seen.frames.values())
        need = self.looks if plain else self.looks + 1
        rival = max((len(o.frames) for k, o in self._seen.items() if k != text and
                     self._overlaps(seen, o)), default=0)  # fmt: skip
        if rival:
            need = max(need, rival + self.looks)
        return n >= need

    @staticmethod
    def _overlaps(a: _Seen, b: _Seen) -> bool:
        return any(_overlap(x, y) for _t, x in a.boxes for _u, y in b.boxes)

    def _expire(self, t: float) -> None:
        horizon = t - self.window_s
        for text in list(self._seen):
            seen = self._seen[text]
            seen.frames = {u: v for u, v in seen.frames.items() if u > horizon}
            seen.boxes = [(u, b) for u, b in seen.boxes if u > horizon]
            if not seen.frames:
                del self._seen[text]


__all__ = ["DEFAULT_LOOKS", "DEFAULT_WINDOW_S", "Look", "ReadConfirmer", "box_of"]
