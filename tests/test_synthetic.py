"""The synthetic camera and its scenarios: validation, real decodable barcodes, timing, stills."""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import zxingcpp

from station.capture.synthetic import (
    DEMO_PACKER,
    DEMO_RETURN,
    SYMBOLOGIES,
    Scenario,
    ScenarioEvent,
    SyntheticCamera,
    card_kind,
    render_card,
)
from station.config import DEFAULT_WAYBILL_PATTERNS
from station.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
W, H, FPS = 960, 540, 10.0
WAYBILL_RES = [re.compile(p) for p in DEFAULT_WAYBILL_PATTERNS.values()]


def decoded(image: np.ndarray) -> set[str]:
    return {b.text for b in zxingcpp.read_barcodes(image)}


def frames_until(cam: SyntheticCamera, t: float) -> dict[float, np.ndarray]:
    out = {}
    while (f := cam.read()) is not None and f.t <= t + 1e-9:
        out[round(f.t, 3)] = f.image
    return out


# ---- scenario validation ------------------------------------------------------------------


def test_from_dict_sorts_events_and_reads_every_kind() -> None:
    sc = Scenario.from_dict(
        {
            "description": "x",
            "seed": 3,
            "event": [
                {"at": 5, "kind": "end"},
                {"at": 1, "kind": "show", "code": "A1", "symbology": "code39",
                 "duration": 1.5, "position": [0.2, 0.8], "size": 0.3},
                {"at": 2, "kind": "key", "text": "PO1"},
                {"at": 3, "kind": "pedal"},
                {"at": 4, "kind": "still", "duration": 0.5},
            ],
        }
    )  # fmt: skip
    evs = list(sc.events())
    assert [e.kind for e in evs] == ["show", "key", "pedal", "still", "end"]
    assert evs[0] == ScenarioEvent(1.0, "show", code="A1", symbology="code39", duration=1.5,
                                   position=(0.2, 0.8), size=0.3)  # fmt: skip
    assert sc.end == 5.0 and sc.seed == 3 and not sc.endless
    assert list(sc.events()) == evs  # a fresh iterator each time


BAD = [
    ({"event": [{"at": 1, "kind": "wave"}]}, "kind must be one of"),
    ({"event": [{"at": 1, "kind": "pedal", "code": "X"}]}, "unknown key for a 'pedal'"),
    ({"event": [{"at": 1, "kind": "key", "text": "A", "colour": 1}]}, "unknown key"),
    ({"event": [{"kind": "pedal"}]}, "missing 'at'"),
    ({"event": [{"at": -1, "kind": "pedal"}]}, "must not be negative"),
    ({"event": [{"at": "1", "kind": "pedal"}]}, "expected a number"),
    ({"event": [{"at": 1, "kind": "show"}]}, "needs a code"),
    ({"event": [{"at": 1, "kind": "show", "code": "X", "symbology": "pdf417"}]}, "symbology"),
    ({"event": [{"at": 1, "kind": "show", "code": "ABC", "symbology": "ean13"}]}, "ean13"),
    ({"event": [{"at": 1, "kind": "show", "code": "X", "duration": 0.2}]}, "duration"),
    ({"event": [{"at": 1, "kind": "show", "code": "X", "position": [2, 0]}]}, "position"),
    ({"event": [{"at": 1, "kind": "show", "code": "X", "size": 3}]}, "size"),
    ({"event": [{"at": 1, "kind": "show", "code": ""}]}, "non-empty"),
    ({"event": [{"at": 1, "kind": "key"}]}, "needs text"),
    ({"event": [{"at": 1, "kind": "still"}]}, "needs a duration"),
    ({"event": [{"at": 1, "kind": "still", "duration": 0}]}, "positive"),
    ({"event": [{"at": 1, "kind": "end"}, {"at": 2, "kind": "end"}]}, "more than one"),
    ({"event": [{"at": 1, "kind": "end"}, {"at": 2, "kind": "pedal"}]}, "after the end"),
    ({"event": {"at": 1}}, "array of tables"),
    ({"event": ["x"]}, "must be a table"),
    ({"events": []}, "unknown top-level key"),
    ({"seed": "1"}, "seed"),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_invalid_scenarios_are_config_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Scenario.from_dict(data)


def test_load_reports_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Scenario.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[event]\nat = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Scenario.load(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[[event]]\nat = 1\nkind = "sing"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"wrong\.toml: event\[0\]"):
        Scenario.load(wrong)


def test_the_example_scenario_is_valid() -> None:
    sc = Scenario.load(REPO / "examples" / "scenario.toml")
    kinds = {e.kind for e in sc.events()}
    assert kinds == {"show", "key", "pedal", "still", "end"}
    assert sc.end == 31.0


# ---- the picture --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "symbology"),
    [
        ("PO20261130-0001", "qrcode"),
        ("SF1234567890123", "code128"),
        ("6901234567892", "ean13"),
        ("PACK-42", "code39"),
        ("3388085504187641652", "datamatrix"),
        ("封箱", "qrcode"),
    ],
)
def test_cards_are_real_barcodes(code: str, symbology: str) -> None:
    card = render_card(code, symbology, 300, 900)
    assert code in decoded(card)


def test_card_kinds() -> None:
    assert card_kind("SEAL") == card_kind("封箱") == card_kind("seal") == "seal"
    assert card_kind("SF1234567890123") == "waybill"
    assert card_kind("PO20261130-0001") == "order"


def test_shown_codes_are_readable_in_view_and_gone_outside_their_window() -> None:
    shows = [
        {"at": 1.0, "kind": "show", "code": "PO20261130-0007", "duration": 2.0},
        {"at": 4.0, "kind": "show", "code": "YT1234567890123", "symbology": "code128"},
        {"at": 7.0, "kind": "show", "code": "SEAL", "position": [0.3, 0.4], "size": 0.4},
    ]
    sc = Scenario.from_dict({"event": [*shows, {"at": 10.0, "kind": "end"}]})
    cam = SyntheticCamera(W, H, FPS, sc, realtime=False)
    cam.start()
    frames = frames_until(cam, 10.0)
    for ev in sc.events():
        if ev.kind != "show":
            continue
        assert ev.code in decoded(frames[round(ev.at + 0.5, 3)]), ev
        assert ev.code not in decoded(frames[round(ev.at - 0.5, 3)]), ev
        assert ev.code not in decoded(frames[round(ev.at + ev.duration + 0.2, 3)]), ev


def test_non_realtime_is_deterministic_and_timed_by_index() -> None:
    sc = Scenario.demo(seed=5, day=date(2026, 11, 30))
    wall0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    a = SyntheticCamera(320, 180, 15, sc, realtime=False, start_wall=wall0)
    b = SyntheticCamera(320, 180, 15, sc, realtime=False, start_wall=wall0)
    a.start()
    b.start()
    for i in range(60):
        fa, fb = a.read(), b.read()
        assert fa is not None and fb is not None
        assert fa.index == i and fa.t == pytest.approx(i / 15)
        assert fa.wall == wall0 + timedelta(seconds=i / 15)
        assert fa.image.shape == (180, 320, 3) and fa.image.dtype == np.uint8
        assert np.array_equal(fa.image, fb.image)
    assert not a.live and a.dropped == 0


def test_frames_move_outside_still_periods_and_freeze_inside() -> None:
    sc = Scenario.from_dict({"event": [{"at": 1.0, "kind": "still", "duration": 1.5},
                                       {"at": 4.0, "kind": "end"}]})  # fmt: skip
    cam = SyntheticCamera(320, 180, FPS, sc, realtime=False)
    cam.start()
    frames = list(iter(cam.read, None))
    assert len(frames) == 40  # ends at the end event
    digest = [hashlib.sha1(f.image.tobytes()).hexdigest() for f in frames]
    still = {digest[i] for i in range(10, 25)}
    assert len(still) == 1  # 1.0 s .. 2.4 s: one picture
    moving = digest[:10] + digest[25:]
    assert all(x != y for x, y in itertools.pairwise(moving))


def test_realtime_paces_frames_and_counts_what_a_slow_consumer_missed() -> None:
    cam = SyntheticCamera(160, 96, 50, Scenario.demo(), realtime=True)
    cam.start()
    assert cam.live
    t0 = time.monotonic()
    first = [cam.read() for _ in range(6)]
    idx = [f.index for f in first]
    assert idx[0] == 0 and idx == sorted(set(idx))
    assert time.monotonic() - t0 >= idx[-1] / 50 - 0.005  # paced, not as fast as possible
    assert cam.dropped == idx[-1] - 5  # zero unless this machine is very busy
    before = cam.dropped
    time.sleep(0.2)  # the consumer falls behind by about ten frames
    late = cam.read()
    assert late is not None and late.index - idx[-1] >= 9
    assert cam.dropped - before == late.index - idx[-1] - 1
    assert late.t == pytest.approx(cam.origin + late.index / 50)
    assert late.t <= time.monotonic()
    cam.stop()
    assert cam.read() is None


def test_synthetic_render_is_cheap() -> None:
    cam = SyntheticCamera(1280, 720, 30, Scenario.demo(), realtime=False)
    cam.start()
    for _ in range(10):
        cam.read()
    t0 = time.perf_counter()
    for _ in range(60):
        cam.read()
    per_frame = (time.perf_counter() - t0) / 60
    assert per_frame < 0.015  # about 1 ms here; generous for a busy CI machine


# ---- the demo script ----------------------------------------------------------------------


def _cycle(seed: int, n: int = 60) -> list[ScenarioEvent]:
    return list(itertools.islice(Scenario.demo(seed, day=date(2026, 11, 30)).events(), n))


def is_waybill(code: str) -> bool:
    return any(r.match(code) for r in WAYBILL_RES)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_demo_exercises_every_stop_rule(seed: int) -> None:
    evs = _cycle(seed)
    assert Scenario.demo(seed).endless and Scenario.demo(seed).end is None
    assert evs == _cycle(seed)
    assert evs[0].at <= 3.0 - 0.3 - 0.01  # the first order is readable within 3 s
    times = [e.at for e in evs]
    assert times == sorted(times)
    codes = [e.code or e.text for e in evs if e.kind in ("show", "key")]
    assert {"SEAL", "封箱"} <= set(codes)
    assert any(is_waybill(c) for c in codes)
    assert any(e.kind == "pedal" for e in evs)
    assert any(e.kind == "key" for e in evs)
    assert any(e.kind == "still" and e.duration >= 20 for e in evs)
    assert codes[0] == DEMO_PACKER and DEMO_RETURN in codes  # the packing floor
    orders = [c for c in codes if card_kind(c) == "order" and c not in (DEMO_PACKER, DEMO_RETURN)]
    assert all(re.fullmatch(r"PO\d{8}-\d{4}|[1-9]\d{17,18}", c) for c in orders)
    assert len(orders) != len(set(orders))  # an order shown again: "rescan"
    for e in evs:
        if e.kind == "show":
            assert 1.5 <= e.duration <= 3.0


def test_demo_keeps_a_code_out_of_view_before_showing_it_again() -> None:
    last_gone: dict[str, float] = {}
    for e in _cycle(0, 200):
        if e.kind != "show":
            continue
        if e.code in last_gone:
            assert e.at - last_gone[e.code] >= 4.0, e
        last_gone[e.code] = e.at + e.duration


def test_demo_orders_come_every_15_to_20_seconds() -> None:
    firsts: list[float] = []
    last = None  # an order shown again right after its own clip is a rescan, not a new one
    for e in _cycle(0, 120):
        code = e.code or e.text
        if code in (DEMO_PACKER, DEMO_RETURN):
            continue
        if e.kind in ("show", "key") and card_kind(code) == "order" and code != last:
            last = code
            firsts.append(e.at)
    gaps = [b - a for a, b in itertools.pairwise(firsts)]
    # Five of the seven episodes of a cycle; the still and timeout ones run longer.
    assert sum(15 <= g <= 20 for g in gaps) >= len(gaps) * 0.65
    assert max(gaps) < 45


def test_symbologies_are_the_documented_ones() -> None:
    assert set(SYMBOLOGIES) == {"qrcode", "code128", "ean13", "code39", "datamatrix"}
