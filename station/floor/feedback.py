"""Sounds at the station: a distinct short tone (and optional spoken prompt) per station event."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from station.errors import ConfigError
from station.floor.events import EventKind, StationEvent
from station.floor.eventworker import QueueWorker

log = logging.getLogger(__name__)

RATE = 22050  # Hz, mono, 16-bit: what espeak-ng writes, and plenty for beeps

# A note: (frequency Hz, milliseconds); frequency 0 is a rest. Distinct by contour, not only
# pitch, so they can be told apart in a noisy warehouse: rising = good, low = bad, siren = alarm.
TONES: dict[str, tuple[tuple[float, int], ...]] = {
    "order-started": ((880.0, 70), (0.0, 15), (1320.0, 90)),
    "waybill-linked": ((1760.0, 60),),
    "sealed": ((1047.0, 70), (1319.0, 70), (1568.0, 140)),
    "refused": ((220.0, 150), (0.0, 60), (220.0, 150)),
    "duplicate": ((660.0, 100), (440.0, 100), (660.0, 100), (440.0, 100)),
    "alarm": ((988.0, 150), (740.0, 150), (988.0, 150), (740.0, 150)),
}
# Low tones get odd harmonics (a buzz): a refusal should not sound like a chime.
BUZZ = frozenset({"refused"})

# Which sound each event plays; events not listed play nothing.
EVENT_SOUNDS: dict[EventKind, str] = {
    EventKind.ORDER_STARTED: "order-started",
    EventKind.WAYBILL_LINKED: "waybill-linked",
    EventKind.CLIP_SEALED: "sealed",
    EventKind.SCAN_REFUSED: "refused",
    EventKind.SCAN_UNREADABLE: "refused",
    EventKind.WAYBILL_UNLINKED: "refused",
    EventKind.DUPLICATE_ORDER: "duplicate",
    EventKind.ALARM_RAISED: "alarm",
}

PROMPTS: dict[str, dict[str, str]] = {
    "en": {
        "order-started": "Order",
        "waybill-linked": "Waybill",
        "sealed": "Sealed",
        "refused": "Not accepted",
        "duplicate": "Duplicate order",
        "alarm": "Alarm",
    },
    "zh": {
        "order-started": "开始",
        "waybill-linked": "运单",
        "sealed": "已封箱",
        "refused": "无效",
        "duplicate": "重复订单",
        "alarm": "警报",
    },
}
ESPEAK_VOICES = {"en": "en-us", "zh": "cmn"}  # espeak-ng's Mandarin voice is "cmn"
VOICES = ("none", *PROMPTS)
OUTPUTS = ("none", "alsa", "log")


def render_tone(name: str, volume: float = 0.5, rate: int = RATE) -> np.ndarray:
    """The samples (int16) of one of ``TONES``; pure and deterministic."""
    parts: list[np.ndarray] = []
    fade = int(rate * 0.005)  # 5 ms raised-cosine edges: no click at note boundaries
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    for freq, ms in TONES[name]:
        n = int(rate * ms / 1000)
        if freq <= 0:
            parts.append(np.zeros(n))
            continue
        t = np.arange(n) / rate
        wave_ = np.sin(2 * np.pi * freq * t)
        if name in BUZZ:
            wave_ += np.sin(2 * np.pi * 3 * freq * t) / 3 + np.sin(2 * np.pi * 5 * freq * t) / 5
            wave_ /= np.abs(wave_).max()
        env = np.ones(n)
        env[:fade] = ramp
        env[-fade:] = ramp[::-1]
        parts.append(wave_ * env)
    samples = np.concatenate(parts) * volume * 32767
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16)


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def read_wav(data: bytes, rate: int = RATE) -> np.ndarray:
    """Mono int16 samples at ``rate`` from a 16-bit WAV (resampled linearly if needed)."""
    with wave.open(io.BytesIO(data), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError("only 16-bit WAV is supported")
        channels, src_rate = w.getnchannels(), w.getframerate()
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    samples = raw.reshape(-1, channels).mean(axis=1) if channels > 1 else raw.astype(np.float64)
    if src_rate != rate and len(samples):
        n = round(len(samples) * rate / src_rate)
        samples = np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)), samples)
    pcm: np.ndarray = np.clip(np.round(samples), -32768, 32767).astype(np.int16)
    return pcm


def speak(text: str, voice: str, espeak: str = "espeak-ng", timeout: float = 30.0) -> bytes:
    """A spoken prompt as WAV bytes, rendered by espeak-ng (build time / first start only)."""
    exe = shutil.which(espeak)
    if exe is None:
        raise ConfigError(
            f"feedback.voice = {voice!r} needs espeak-ng to render the spoken prompts once"
            " (apt install espeak-ng), or prompts already rendered in the sounds directory"
        )
    proc = subprocess.run(
        [exe, "-v", ESPEAK_VOICES[voice], "-s", "170", "--stdout", text],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode or not proc.stdout.startswith(b"RIFF"):
        err = proc.stderr.decode(errors="replace").strip()[:200]
        raise ConfigError(f"espeak-ng failed for voice {voice!r}: {err or 'no WAV output'}")
    return _fix_stream_wav(proc.stdout)


def _fix_stream_wav(data: bytes) -> bytes:
    """espeak-ng --stdout writes a WAV header with unknown (0xFFFFFFFF) sizes: fix them."""
    if len(data) < 44 or data[36:40] != b"data":
        return data
    body = data[44:]
    fixed = bytearray(data[:44])
    fixed[4:8] = (36 + len(body)).to_bytes(4, "little")
    fixed[40:44] = len(body).to_bytes(4, "little")
    return bytes(fixed) + body


def prepare_sounds(
    directory: Path,
    *,
    volume: float = 0.5,
    voice: str = "none",
    espeak: str = "espeak-ng",
) -> dict[str, Path]:
    """Write each sound's WAV into ``directory`` (tone, then the spoken prompt if ``voice``);
    return name -> path. Files already right are kept; a spoken prompt is rendered once and
    cached as ``prompt-<voice>-<name>.wav`` (so a station image can ship them pre-rendered)."""
    if voice not in VOICES:
        raise ConfigError(f"feedback.voice must be one of {', '.join(VOICES)}, not {voice!r}")
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in TONES:
        samples = render_tone(name, volume)
        if voice != "none":
            prompt_path = directory / f"prompt-{voice}-{name}.wav"
            if not prompt_path.is_file():
                _write_atomic(prompt_path, speak(PROMPTS[voice][name], voice, espeak))
            prompt = read_wav(prompt_path.read_bytes())
            gap = np.zeros(int(RATE * 0.04), dtype=np.int16)
            samples = np.concatenate([samples, gap, prompt])
        data = wav_bytes(samples)
        # The name says what is in it, so a changed volume or voice never plays a stale file.
        digest = hashlib.sha256(data).hexdigest()[:10]
        path = directory / f"{name}-{voice}-{digest}.wav"
        if not path.is_file() or path.read_bytes() != data:
            _write_atomic(path, data)
        out[name] = path
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- sinks --------------------------------------------------------------------------------


class SoundSink(Protocol):
    """Plays a WAV file. Called on the feedback thread; must not wait for the sound to end."""

    def play(self, name: str, path: Path) -> None: ...

    def close(self) -> None: ...


class AplaySink:
    """Plays through ALSA with ``aplay`` (alsa-utils), one short-lived process per sound.

    A new sound cuts off one still playing (the newest event is the one that matters). Finished
    players are reaped on the next play and in ``close``, so none is left behind as a zombie.
    """

    def __init__(self, device: str = "default", player: str = "aplay") -> None:
        exe = shutil.which(player)
        if exe is None:
            raise ConfigError(
                f"feedback.output = alsa needs {player!r} (apt install alsa-utils), not found"
            )
        self.argv = [exe, "-q", "-D", device]
        self._procs: list[subprocess.Popen[bytes]] = []
        # the players this sink terminated: aplay stopped while it reads the WAV header exits 1
        # ("read error"), not -15, and a sound cut off on purpose is no device problem
        self._cut_off: set[subprocess.Popen[bytes]] = set()

    def play(self, name: str, path: Path) -> None:
        self._reap(cut_off=True)
        try:
            proc = subprocess.Popen(
                [*self.argv, str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            log.error("cannot start %s for sound %s: %s", self.argv[0], name, exc)
            return
        self._procs.append(proc)

    def _reap(self, *, cut_off: bool) -> None:
        alive: list[subprocess.Popen[bytes]] = []
        for proc in self._procs:
            code = proc.poll()
            if code is None and cut_off:
                proc.terminate()
                self._cut_off.add(proc)
                alive.append(proc)  # reaped next time; terminate takes a moment
            elif code is None:
                alive.append(proc)
            elif code not in (0, -15) and proc not in self._cut_off:
                log.warning("%s exited with %d (no sound device?)", self.argv[0], code)
        self._procs = alive
        self._cut_off &= set(alive)

    def close(self) -> None:
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs = []
        self._cut_off = set()


class LogSink:
    """Logs each sound instead of playing it (the demo, a station without a speaker)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path

    def play(self, name: str, path: Path) -> None:
        log.info("sound %s (%s)", name, path.name)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} sound {name}\n")

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Played:
    name: str
    path: Path
    at: float  # time.monotonic() when the sink was asked to play


class RecordingSink:
    """A fake sink: remembers what was played and when (tests, benchmarks)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.played: list[Played] = []
        self._clock = clock
        self._cond = threading.Condition()

    def play(self, name: str, path: Path) -> None:
        with self._cond:
            self.played.append(Played(name, path, self._clock()))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Played]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.played) >= count, timeout)
            return list(self.played)

    def close(self) -> None:
        pass


# ---- the listener -------------------------------------------------------------------------


class Feedback:
    """An event listener that plays the sound of each event on its own thread ("feedback").

    ``on_event`` only puts the sound's name into a small queue, so the capture loop never waits
    for a speaker; when the queue is full (a stuck sink) the sound is dropped and logged. A sink
    that raises is logged and the thread goes on. ``close`` plays what is queued and stops.
    """

    def __init__(
        self,
        sink: SoundSink,
        sounds: Mapping[str, Path],
        *,
        event_sounds: Mapping[EventKind, str] = EVENT_SOUNDS,
        max_queue: int = 8,
    ) -> None:
        missing = set(event_sounds.values()) - set(sounds)
        if missing:
            raise ValueError(f"no sound file for {sorted(missing)}")  # programming error
        self.sink = sink
        self.sounds = dict(sounds)
        self.event_sounds = dict(event_sounds)
        self.dropped = 0
        self._worker: QueueWorker[str] = QueueWorker(
            "feedback",
            lambda name: self.sink.play(name, self.sounds[name]),
            lambda name: f"playing sound {name}",
            max_queue=max_queue,
            close_timeout_s=15.0,
        )

    def on_event(self, event: StationEvent) -> None:
        name = self.event_sounds.get(event.kind)
        if event.kind is EventKind.WAYBILL_LINKED and event.data.get("linked_to") == "order":
            # Kept for a clip to come (the camera is lost), in none yet: no "linked" blip.
            name = None
        if name is not None and not self._worker.submit(name):
            self.dropped += 1

    def close(self) -> None:
        self._worker.close()
        self.sink.close()


__all__ = [
    "EVENT_SOUNDS",
    "TONES",
    "AplaySink",
    "Feedback",
    "LogSink",
    "RecordingSink",
    "SoundSink",
    "prepare_sounds",
    "render_tone",
]
