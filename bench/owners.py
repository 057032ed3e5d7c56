"""Every second belongs to one order: run the endless demo scene for N minutes (not in real
time) through the real station and check, from the per-frame overlay state the recorder
keeps, that no clip has a frame labelled with another order and no two clips overlap."""

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
from station.capture.frames import Frame  # noqa: E402
from station.capture.synthetic import DEMO_SESSION, Scenario, SyntheticCamera  # noqa: E402
from station.recording.recorder import FinishedClip  # noqa: E402
from station.service import assemble  # noqa: E402


class Until:
    """The endless demo camera, ended after ``seconds`` of scene time."""

    def __init__(self, cam: SyntheticCamera, seconds: float) -> None:
        self.cam, self.seconds = cam, seconds

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.cam, name)

    def read(self, timeout: float = 2.0) -> Frame | None:
        frame = self.cam.read(timeout)
        return None if frame is None or frame.t >= self.seconds else frame


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
        asm.station.run(threading.Event())
        clips = asm.ledger.clips()
        asm.close()
    problems = check(finished)
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
        "problems": problems, "seconds": round(time.monotonic() - t0, 1),
    }))  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
