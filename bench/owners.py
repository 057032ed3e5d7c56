"""Every second belongs to one order: run the endless demo scene for N minutes (not in real
time) through the real station and check, from the per-frame overlay state the recorder
keeps, that no clip has a frame labelled with another order and no two clips overlap; and,
from the caption burned into each frame, that none shows another clip's waybill, packer or
kind."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from station import config as config_mod  # noqa: E402
from station.capture.frames import Caption, Frame  # noqa: E402
from station.capture.synthetic import DEMO_SESSION, Scenario, SyntheticCamera  # noqa: E402
from station.recording.recorder import FinishedClip  # noqa: E402
from station.recording.runner import Station  # noqa: E402
from station.service import assemble  # noqa: E402
from station.store.ledger import ClipRecord  # noqa: E402


class Until:
    """The endless demo camera, ended after ``seconds`` of scene time."""

    def __init__(self, cam: SyntheticCamera, seconds: float) -> None:
        self.cam, self.seconds = cam, seconds

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.cam, name)

    def read(self, timeout: float = 2.0) -> Frame | None:
        frame = self.cam.read(timeout)
        return None if frame is None or frame.t >= self.seconds else frame


class Captions:
    """Wraps a station's overlay and recorder: the caption burned into each frame pushed,
    by camera time."""

    def __init__(self, station: Station) -> None:
        assert station.overlay is not None
        self.overlay, self.push = station.overlay, station.recorder.push
        self.last: Caption | None = None
        self.shown: dict[float, Caption] = {}
        station.overlay = self  # type: ignore[assignment]
        station.recorder.push = self._push  # type: ignore[method-assign]

    def apply_i420(self, image, caption: Caption) -> None:  # type: ignore[no-untyped-def]
        self.last = caption
        self.overlay.apply_i420(image, caption)

    def _push(self, image, t, wall, label=None) -> None:  # type: ignore[no-untyped-def]
        if self.last is not None:
            self.shown[t] = self.last
        self.push(image, t, wall, label)


def check_captions(
    clips: list[ClipRecord], finished: list[FinishedClip], shown: dict[float, Caption]
) -> list[str]:
    """Each clip's frames show its own waybills, packer and kind (or no order: pre-roll)."""
    problems = []
    spans = {f.record.id: f.span for f in finished if f.record is not None and f.span}
    for c in clips:
        span = spans.get(c.id)
        if span is None:
            continue
        own = {w.waybill for w in c.waybills}
        for t in (t for t in shown if span[0] <= t <= span[1]):
            cap = shown[t]
            if cap.order_id is None:
                continue
            foreign = set((cap.waybill or "").split()) - own
            if (
                cap.order_id != c.order_id
                or foreign
                or (cap.packer, cap.kind) != (c.packer, c.kind)
            ):
                problems.append(f"{c.order_id} at t={t:.3f} shows {cap.order_id} {sorted(foreign)}"
                                f" {cap.packer} {cap.kind}")  # fmt: skip
    return problems


def check(finished: list[FinishedClip]) -> list[str]:
    problems, spans = [], []
    for f in finished:
        foreign = {label for label, _n in f.frame_labels} - {None, f.order_id}
        if foreign:
            problems.append(f"{f.order_id}: frames labelled {sorted(foreign)}")
        if f.span is not None:
            spans.append((f.span, f.order_id))
    spans.sort()
    for ((_a0, a1), a), ((b0, _b1), b) in itertools.pairwise(spans):
        if b0 <= a1:
            problems.append(f"{a} and {b} share frames ({b0:.3f} <= {a1:.3f})")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=float, default=10.0)
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    finished: list[FinishedClip] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="packcam-owners-") as tmp:
        cfg = config_mod.load(None).with_data_dir(Path(tmp))
        cfg = cfg.replace("camera", width=w, height=h, fps=args.fps)
        cfg = cfg.replace("session", **DEMO_SESSION).replace("proof", enabled=False)
        cam = Until(SyntheticCamera(w, h, args.fps, Scenario.demo(), realtime=False),
                    args.minutes * 60)  # fmt: skip
        asm = assemble(cfg, camera=cam, live_view=False, on_finished=finished.append)  # type: ignore[arg-type]
        captions = Captions(asm.station)
        asm.station.run(threading.Event())
        clips = asm.ledger.clips()
        asm.close()
    problems = check(finished) + check_captions(clips, finished, captions.shown)
    reasons: dict[str, int] = {}
    for c in clips:
        reasons[c.finish_reason] = reasons.get(c.finish_reason, 0) + 1
    frames = sum(n for f in finished for _l, n in f.frame_labels)
    idle = sum(n for f in finished for label, n in f.frame_labels if label is None)
    print(json.dumps({
        "minutes": args.minutes, "size": args.size, "clips": len(clips), "reasons": reasons,
        "frames_in_clips": frames, "idle_pre_roll_frames": idle,
        "foreign_label_frames": sum(
            n for f in finished for label, n in f.frame_labels
            if label not in (None, f.order_id)),
        "frames_captions_checked": len(captions.shown),
        "problems": problems[:20], "seconds": round(time.monotonic() - t0, 1),
    }))  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
