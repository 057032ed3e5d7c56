"""Child process for the writer's crash and disk-error tests: ``python helpers_writer_child.py``."""

from __future__ import annotations

import json
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np

from station.errors import RecordingError
from station.recording.writer import ClipWriter, EncoderSettings, to_i420

WIDTH, HEIGHT, FPS = 320, 240, 30.0


def frame(i: int) -> np.ndarray:
    """A moving bar over noise: every frame differs, so every frame costs real bytes."""
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    x = (i * 7) % (WIDTH - 20)
    img[:, x : x + 20] = (0, 200, 255)
    return img


def run_until_killed(path: Path) -> None:
    """Write frames at ~100 fps forever, reporting the encoded count after each write."""
    writer = ClipWriter(path, EncoderSettings(WIDTH, HEIGHT, FPS), fsync_interval_s=0.1)
    i = 0
    while True:
        writer.write(to_i420(frame(i)), i / FPS)
        i += 1
        sys.stdout.write(f"{writer.frames_written} {writer.frames_encoded}\n")
        sys.stdout.flush()
        time.sleep(0.01)


def run_file_size_limit(path: Path, limit: int) -> None:
    """Write noise frames under RLIMIT_FSIZE until the writer fails; report where, as JSON."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    writer = ClipWriter(path, EncoderSettings(WIDTH, HEIGHT, FPS))
    result: dict[str, object] = {"raised_in": None}
    try:
        for i in range(300):
            writer.write(to_i420(frame(i)), i / FPS)
            time.sleep(0.002)
        writer.finish()
    except RecordingError as exc:
        result = {"raised_in": "write/finish", "message": str(exc), "frames": writer.frames_written}
    for attempt in (1, 2):  # finish after an error must be safe and raise again
        try:
            writer.finish()
            result[f"finish{attempt}"] = "returned"
        except RecordingError as exc:
            result[f"finish{attempt}"] = str(exc)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    if mode == "kill":
        run_until_killed(target)
    elif mode == "fsize":
        run_file_size_limit(target, int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
