"""Station feedback: tones, spoken prompts, sinks, the listener, and sounds from a real station."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from station import config as config_mod
from station.backends import build_feedback
from station.capture.synthetic import Scenario, SyntheticCamera
from station.errors import ConfigError
from station.floor.alarms import AlarmBoard
from station.floor.events import EventKind, EventRecorder, StationEvent, StationEvents
from station.floor.feedback import (
    EVENT_SOUNDS,
    RATE,
    TONES,
    AplaySink,
    Feedback,
    LogSink,
    RecordingSink,
    prepare_sounds,
    read_wav,
    render_tone,
    wav_bytes,
)
from station.service import assemble


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (Makefile TEST_APT_PACKAGES)")
        pytest.skip(f"{name} is not installed (apt install {name}); covered by fakes elsewhere")
    return path


def event(kind: EventKind, order: str | None = None) -> StationEvent:
    return StationEvent(kind, "st-1", 0.0, order)


# ---- tones ---------------------------------------------------------------------------------


def test_every_sound_is_distinct_short_and_clean() -> None:
    rendered = {name: render_tone(name, 0.5) for name in TONES}
    for name, s in rendered.items():
        assert s.dtype == np.int16
        assert 0.05 < len(s) / RATE <= 0.7, name  # short: never in the way of the next scan
        assert abs(int(s[0])) < 200 and abs(int(s[-1])) < 200, name  # faded edges: no click
        assert 0.4 * 32767 < np.abs(s).max() <= 0.5 * 32767 + 1, name
    # No two sounds are the same samples (contour, not only length, tells them apart).
    blobs = {name: s.tobytes() for name, s in rendered.items()}
    assert len(set(blobs.values())) == len(blobs)
    # Good news rises, bad news is low: the main frequency of each note says so.
    assert TONES["order-started"][0][0] < TONES["order-started"][-1][0]
    assert max(f for f, _ in TONES["refused"]) < min(f for f, _ in TONES["sealed"] if f)


def test_volume_scales_the_samples() -> None:
    loud, quiet = render_tone("sealed", 1.0), render_tone("sealed", 0.25)
    assert np.abs(loud).max() == pytest.approx(32767, abs=2)
    assert np.abs(quiet).max() == pytest.approx(32767 / 4, rel=0.01)


def test_the_refusal_buzz_has_odd_harmonics_and_the_chime_has_none() -> None:
    def spectrum_at(name: str, freq: float) -> float:
        s = render_tone(name, 0.5).astype(np.float64)
        spec = np.abs(np.fft.rfft(s))
        freqs = np.fft.rfftfreq(len(s), 1 / RATE)
        return float(spec[np.argmin(np.abs(freqs - freq))] / spec.max())

    assert spectrum_at("refused", 660.0) > 0.1
    assert spectrum_at("waybill-linked", 3 * 1760.0) < 0.01


def test_every_event_sound_exists() -> None:
    assert set(EVENT_SOUNDS.values()) <= set(TONES)
    assert EVENT_SOUNDS[EventKind.SCAN_UNREADABLE] == EVENT_SOUNDS[EventKind.SCAN_REFUSED]
    distinct = (
        EventKind.ORDER_STARTED,
        EventKind.WAYBILL_LINKED,
        EventKind.CLIP_SEALED,
        EventKind.SCAN_REFUSED,
        EventKind.DUPLICATE_ORDER,
        EventKind.ALARM_RAISED,
    )
    assert len({EVENT_SOUNDS[k] for k in distinct}) == 6


# ---- files ---------------------------------------------------------------------------------


def test_prepare_sounds_writes_valid_wavs_once(tmp_path: Path) -> None:
    sounds = prepare_sounds(tmp_path / "s", volume=0.5)
    assert set(sounds) == set(TONES)
    for name, path in sounds.items():
        with wave.open(str(path), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert np.array_equal(data, render_tone(name, 0.5))
    mtimes = {p: p.stat().st_mtime_ns for p in sounds.values()}
    again = prepare_sounds(tmp_path / "s", volume=0.5)
    assert again == sounds
    assert {p: p.stat().st_mtime_ns for p in again.values()} == mtimes
    louder = prepare_sounds(tmp_path / "s", volume=0.9)
    assert louder["sealed"] != sounds["sealed"]  # a new volume never plays the old file
    assert not list((tmp_path / "s").glob(".*.tmp"))


def test_read_wav_resamples_and_mixes_down() -> None:
    t = np.arange(11025) / 11025
    stereo = np.stack([np.sin(2 * np.pi * 100 * t)] * 2, axis=1) * 10000
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(11025)
        w.writeframes(stereo.astype("<i2").tobytes())
    out = read_wav(buf.getvalue())
    assert len(out) == RATE  # one second at 22.05 kHz
    assert np.abs(out).max() == pytest.approx(10000, rel=0.01)
    assert np.array_equal(read_wav(wav_bytes(render_tone("sealed"))), render_tone("sealed"))


@pytest.mark.parametrize("voice", ["en", "zh"])
def test_spoken_prompts_follow_the_tone(tmp_path: Path, voice: str) -> None:
    need_tool("espeak-ng")
    sounds = prepare_sounds(tmp_path, volume=0.5, voice=voice)
    for name in TONES:
        prompt = tmp_path / f"prompt-{voice}-{name}.wav"
        assert prompt.is_file()
        spoken = read_wav(prompt.read_bytes())
        assert len(spoken) > RATE * 0.15 and np.abs(spoken).max() > 1000  # real speech
        full = read_wav(sounds[name].read_bytes())
        tone = render_tone(name, 0.5)
        assert np.array_equal(full[: len(tone)], tone)  # the tone first: the fast cue
        assert len(full) == len(tone) + int(RATE * 0.04) + len(spoken)


def test_pre_rendered_prompts_need_no_espeak(tmp_path: Path) -> None:
    for name in TONES:  # as a station image would ship them
        (tmp_path / f"prompt-zh-{name}.wav").write_bytes(wav_bytes(render_tone("alarm", 0.1)))
    sounds = prepare_sounds(tmp_path, voice="zh", espeak="no-such-espeak")
    assert len(read_wav(sounds["sealed"].read_bytes())) > len(render_tone("sealed"))


def test_a_voice_without_espeak_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="espeak-ng"):
        prepare_sounds(tmp_path, voice="en", espeak="no-such-espeak")
    with pytest.raises(ConfigError, match="voice"):
        prepare_sounds(tmp_path, voice="fr")


# ---- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("output", "speaker", "output"),
        ("device", "hw 0", "device"),
        ("device", "", "device"),
        ("player", " ", "player"),
        ("volume", 0.0, "volume"),
        ("volume", 1.5, "volume"),
        ("voice", "fr", "voice"),
    ],
)
def test_bad_feedback_config_is_refused(key: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_mod.from_dict({"feedback": {key: value}})


def test_feedback_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        config_mod.from_dict({"feedback": {"beep": True}})


# ---- the listener and sinks ----------------------------------------------------------------


def test_feedback_plays_each_event_sound_in_order(tmp_path: Path) -> None:
    sink = RecordingSink()
    fb = Feedback(sink, prepare_sounds(tmp_path))
    kinds = [
        EventKind.ORDER_STARTED,
        EventKind.WAYBILL_LINKED,
        EventKind.CLIP_ARCHIVED,  # no sound
        EventKind.CLIP_SEALED,
        EventKind.SCAN_UNREADABLE,
        EventKind.DUPLICATE_ORDER,
        EventKind.ALARM_RAISED,
        EventKind.ALARM_CLEARED,  # no sound
    ]
    t0 = time.monotonic()
    for k in kinds:
        fb.on_event(event(k))
    fb.close()
    names = [p.name for p in sink.played]
    assert names == ["order-started", "waybill-linked", "sealed", "refused", "duplicate", "alarm"]
    assert all(p.at >= t0 for p in sink.played)
    assert [p.at for p in sink.played] == sorted(p.at for p in sink.played)


class BlockingSink(RecordingSink):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def play(self, name: str, path: Path) -> None:
        self.release.wait(5)
        super().play(name, path)


def test_a_stuck_speaker_never_blocks_the_caller(tmp_path: Path) -> None:
    sink = BlockingSink()
    fb = Feedback(sink, prepare_sounds(tmp_path), max_queue=2)
    t0 = time.perf_counter()
    for _ in range(20):
        fb.on_event(event(EventKind.ORDER_STARTED))
    assert time.perf_counter() - t0 < 0.5
    assert fb.dropped >= 17  # one playing, two queued, the rest dropped and counted
    sink.release.set()
    fb.close()
    assert 1 <= len(sink.played) <= 3


class FailingSink(RecordingSink):
    def play(self, name: str, path: Path) -> None:
        super().play(name, path)
        if name == "order-started":
            raise OSError("speaker unplugged")


def test_a_failing_sink_is_logged_and_the_next_sound_still_plays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FailingSink()
    fb = Feedback(sink, prepare_sounds(tmp_path))
    fb.on_event(event(EventKind.ORDER_STARTED))
    fb.on_event(event(EventKind.CLIP_SEALED))
    fb.close()
    assert [p.name for p in sink.played] == ["order-started", "sealed"]
    assert "playing sound order-started failed" in caplog.text


def test_aplay_sink_plays_through_alsa_and_leaves_no_process(tmp_path: Path) -> None:
    need_tool("aplay")
    sounds = prepare_sounds(tmp_path)
    sink = AplaySink(device="null")
    sink.play("sealed", sounds["sealed"])
    sink.play("alarm", sounds["alarm"])  # cuts off the first if it still plays
    procs, cut = list(sink._procs), set(sink._cut_off)
    assert procs and procs[-1].args[-1] == str(sounds["alarm"])
    assert procs[-1].args[1:4] == ["-q", "-D", "null"]
    assert procs[-1] not in cut
    sink.close()
    assert all(p.returncode is not None for p in procs)
    # the last sound played through; a first one still running was cut off, and then aplay
    # exits -15, or 1 if the signal came while it read the header (seen under load)
    assert procs[-1].returncode == 0
    assert all(p.returncode == 0 or p in cut for p in procs)


def test_a_player_the_sink_cut_off_is_no_failure_but_one_that_fails_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """aplay killed while it still reads the WAV header exits 1 ("read error"), not -15: the
    sink must not report a sound it cut off itself as a broken device, only a real failure."""
    ready = tmp_path / "playing"
    player = tmp_path / "player"
    # plays "long*" until terminated (exit 1, as aplay can); "bad*" fails; anything else is done
    player.write_text(
        "#!/bin/sh\n"
        'case "$4" in\n'
        f"  *long*) trap 'kill $pid; exit 1' TERM; sleep 60 & pid=$!; touch {ready}; wait $pid;;\n"
        "  *bad*) exit 1;;\n"
        "esac\n"
    )
    player.chmod(0o755)
    sink = AplaySink(player=str(player))
    sink.play("sealed", tmp_path / "long.wav")
    deadline = time.monotonic() + 60
    while not ready.exists():  # its TERM trap is set: a cut-off now exits 1
        assert time.monotonic() < deadline, "the fake player never started"
        time.sleep(0.01)
    first = sink._procs[0]
    sink.play("alarm", tmp_path / "alarm.wav")  # cuts off the first
    assert first.wait(timeout=60) == 1
    sink.play("sealed", tmp_path / "bad.wav")  # reaps the first: cut off, not failed
    assert "exited with" not in caplog.text
    bad = sink._procs[-1]
    assert bad.wait(timeout=60) == 1
    sink.play("sealed", tmp_path / "done.wav")  # reaps the failed one
    sink.close()
    assert caplog.text.count("exited with 1 (no sound device?)") == 1


def test_aplay_missing_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="alsa-utils"):
        AplaySink(player="no-such-aplay")


def test_log_sink_writes_the_sound_log(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "sounds.log")
    sink.play("sealed", tmp_path / "x.wav")
    assert (tmp_path / "sounds.log").read_text().strip().endswith("sound sealed")


def test_build_feedback_follows_the_config(cfg: config_mod.Config) -> None:
    assert build_feedback(cfg) is None  # output = none
    fb = build_feedback(cfg.replace("feedback", output="log"))
    assert fb is not None and isinstance(fb.sink, LogSink)
    fb.on_event(event(EventKind.CLIP_SEALED))
    fb.close()
    log = cfg.station.data_dir / "sounds.log"
    assert "sound sealed" in log.read_text()


# ---- alarms and the event hub --------------------------------------------------------------


def test_alarm_board_emits_raised_once_and_cleared() -> None:
    rec = EventRecorder()
    board = AlarmBoard(events=StationEvents("st-1", [rec]))
    board.raise_("disk-full", "/data", "1 MB free")
    board.raise_("disk-full", "/data", "0 MB free")  # still the same alarm
    board.clear("disk-full", "/data")
    board.clear("disk-full", "/data")  # not active: nothing
    assert rec.kinds() == [EventKind.ALARM_RAISED, EventKind.ALARM_CLEARED]
    assert rec.events[0].data["alarm"] == "disk-full"


def test_a_failing_listener_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def on_event(self, event: StationEvent) -> None:
            raise RuntimeError("boom")

    rec = EventRecorder()
    hub = StationEvents("st-1", [Broken(), rec])
    hub.emit(EventKind.ORDER_STARTED, 1.0, "PO-1")
    assert rec.kinds() == [EventKind.ORDER_STARTED]
    assert "event listener" in caplog.text


# ---- a real station ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_station_run_plays_the_right_sound_at_each_step(cfg: config_mod.Config) -> None:
    cfg = cfg.replace("camera", width=640, height=360, fps=15.0).replace("proof", enabled=False)
    scenario = Scenario.from_dict(
        {
            "seed": 1,
            "event": [
                # garbled: refused (before the order: the seal's sound comes from the finisher
                # thread, so a scan after it could be heard first)
                {"at": 0.2, "kind": "key", "text": "PO-FB\x1b[2J"},
                {"at": 0.5, "kind": "key", "text": "PO-FB-1"},
                {"at": 1.5, "kind": "key", "text": "SF1234567890123"},
                {"at": 2.5, "kind": "key", "text": "SEAL"},
                {"at": 4.0, "kind": "end"},
            ],
        }
    )
    cam = SyntheticCamera(640, 360, 15.0, scenario, realtime=False)
    asm = assemble(cfg, camera=cam, live_view=False)
    sink, rec = RecordingSink(), EventRecorder()
    assert asm.events is not None
    asm.events.add(Feedback(sink, prepare_sounds(cfg.station.data_dir / "sounds")))
    asm.events.add(rec)
    asm.station.run(threading.Event())
    asm.close()
    assert [p.name for p in sink.played] == ["refused", "order-started", "waybill-linked", "sealed"]
    assert rec.kinds() == [
        EventKind.SCAN_UNREADABLE,
        EventKind.ORDER_STARTED,
        EventKind.WAYBILL_LINKED,
        EventKind.CLIP_SEALED,
    ]
    started, linked, sealed = rec.events[1:]
    assert started.order_id == linked.order_id == sealed.order_id == "PO-FB-1"
    assert linked.data["waybill"] == "SF1234567890123"
    assert len(sealed.data["sha256"]) == 64 and sealed.data["finish_reason"] == "sealed"


@pytest.mark.slow
def test_a_refused_order_buzzes_and_says_why(cfg: config_mod.Config) -> None:
    class FullDisk:
        def refusal(self) -> str | None:
            return "disk full: 12 MB free"

        def must_finish_clip(self) -> bool:
            return False

    cfg = cfg.replace("camera", width=320, height=180, fps=15.0).replace("proof", enabled=False)
    scenario = Scenario.from_dict(
        {"event": [{"at": 0.5, "kind": "key", "text": "PO-FULL"}, {"at": 1.5, "kind": "end"}]}
    )
    asm = assemble(cfg, camera=SyntheticCamera(320, 180, 15.0, scenario, realtime=False),
                   live_view=False)  # fmt: skip
    asm.station.guard = FullDisk()
    sink, rec = RecordingSink(), EventRecorder()
    assert asm.events is not None
    asm.events.add(Feedback(sink, prepare_sounds(cfg.station.data_dir / "sounds")))
    asm.events.add(rec)
    asm.station.run(threading.Event())
    asm.close()
    assert [p.name for p in sink.played] == ["refused"]
    [ev] = rec.events
    assert (ev.kind, ev.order_id, ev.data["why"]) == (
        EventKind.SCAN_REFUSED, "PO-FULL", "disk full: 12 MB free")  # fmt: skip


def test_a_replayed_video_plays_no_sounds(cfg: config_mod.Config) -> None:
    from station.floor.hooks import build_events

    cfg = cfg.replace("feedback", output="log")
    for live, expect in ((True, True), (False, False)):
        events = build_events(cfg, live=live)
        assert any(isinstance(x, Feedback) for x in events.listeners) is expect
        events.close()


# ---- `packcam sounds` ----------------------------------------------------------------------


def test_packcam_sounds_renders_lists_and_plays(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from station.cli import main

    assert main(["sounds", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "s")]) == 0
    listed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert set(listed) == set(TONES)
    assert all(Path(p).is_file() and Path(p).parent == tmp_path / "s" for p in listed.values())
    assert main(["sounds", "--data", str(tmp_path / "d"), "--play", "nope"]) == 2
    assert "no sound 'nope'" in capsys.readouterr().err
    need_tool("aplay")
    args = ["sounds", "--data", str(tmp_path / "d"), "--play", "sealed", "--device", "null"]
    assert main(args) == 0
