"""`packcam doctor`: every check against real files, sockets, encoders and the synthetic camera,
the JSON report against its schema, and the CLI as a user runs it."""

from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from proof_support import tsa_rsa  # noqa: F401

from station import config as config_mod
from station.capture.hardware.mock_evdev import FakeEvdev
from station.proof.keys import StationKey
from station.recording.writer import EncoderSettings
from station.runtime import doctor
from station.runtime.doctor import FAIL, OK, WARN, Probes, run_checks

REPO = Path(__file__).resolve().parents[1]

# The report's JSON schema (draft 2020-12 subset); checked by hand below, and by jsonschema too
# where it is installed.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "packcam", "station", "time", "ok", "counts", "checks"],
    "additionalProperties": False,
    "properties": {
        "schema": {"type": "integer", "enum": [1]},
        "packcam": {"type": "string", "minLength": 1},
        "station": {"type": "string", "minLength": 1},
        "time": {"type": "string", "minLength": 20},
        "ok": {"type": "boolean"},
        "counts": {
            "type": "object",
            "required": ["OK", "WARN", "FAIL"],
            "additionalProperties": False,
            "properties": {s: {"type": "integer"} for s in ("OK", "WARN", "FAIL")},
        },
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "status", "message", "fix", "data"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "enum": list(doctor.CHECK_NAMES)},
                    "status": {"type": "string", "enum": ["OK", "WARN", "FAIL"]},
                    "message": {"type": "string", "minLength": 1},
                    "fix": {"type": "string"},
                    "data": {"type": "object"},
                },
            },
        },
    },
}
_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}


def schema_errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """The subset of JSON Schema used above: type, enum, minLength, required, properties,
    additionalProperties: false, items."""
    errors = []
    tp = _TYPES[schema["type"]]
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        return [f"{where}: expected {schema['type']}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{where}: shorter than {schema['minLength']}")
    if tp is dict:
        props = schema.get("properties", {})
        errors += [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{where}: unexpected {k!r}" for k in value if k not in props]
        for k, sub in props.items():
            if k in value:
                errors += schema_errors(value[k], sub, f"{where}.{k}")
    if tp is list and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    return errors


def test_the_hand_written_schema_check_catches_what_it_should() -> None:
    check = {"name": "clock", "status": "OK", "message": "m", "fix": "", "data": {}}
    good = {"schema": 1, "packcam": "0.1", "station": "s", "time": "2026-12-04T16:00:00+00:00",
            "ok": True, "counts": {"OK": 1, "WARN": 0, "FAIL": 0}, "checks": [check]}  # fmt: skip
    assert schema_errors(good, SCHEMA) == []
    bad = json.loads(json.dumps(good))
    bad["checks"][0]["status"] = "MAYBE"
    bad["checks"][0]["extra"] = 1
    bad["counts"]["OK"] = True
    del bad["ok"]
    assert sorted(schema_errors(bad, SCHEMA)) == sorted(
        [
            "$.checks[0]: unexpected 'extra'",
            "$.checks[0].status: 'MAYBE' not in ['OK', 'WARN', 'FAIL']",
            "$.counts.OK: expected integer, got bool",
            "$: missing 'ok'",
        ]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def small(cfg: config_mod.Config) -> config_mod.Config:
    """A small synthetic station whose disk forecast does not depend on this machine's disk."""
    cfg = cfg.replace("camera", width=320, height=240, fps=15.0)
    cfg = cfg.replace("web", port=free_port())
    return cfg.replace("retention", min_age_days=0.001, free_floor_mb=1)


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_synthetic_station_is_all_ok_and_hardware_lines_say_what_is_absent(small) -> None:
    checks = run_checks(small, probes=Probes(clock_synced=lambda: True, camera_seconds=0.7))
    assert [c.name for c in checks] == list(doctor.CHECK_NAMES)
    # Evidence without a company CA or a TSA can never be authentic: said, not hidden.
    assert {c.name: c.status for c in checks if c.status != OK} == {
        "certificate": WARN,
        "tsa": WARN,
    }
    got = by_name(checks)
    assert "synthetic camera: no real camera is used or checked" in got["camera"].message
    assert got["camera"].data["width"] == 320 and got["camera"].data["height"] == 240
    assert got["camera"].data["fps"] == pytest.approx(15, rel=0.1)
    assert "no USB scanner configured" in got["scanner"].message
    assert "no pedal configured" in got["pedal"].message
    enc = got["encoder"]
    assert enc.data["kind"] == "software" and enc.data["i_period"] == 60
    assert enc.data["headroom"] >= 2 and "key frames every 60 frames as configured" in enc.message
    assert all(c.fix == "" for c in checks if c.status == OK)
    assert "packcam ca issue" in got["certificate"].fix and "tsa_urls" in got["tsa"].fix


def test_doctor_cli_json_follows_the_schema(small, tmp_path: Path) -> None:
    toml = tmp_path / "packcam.toml"
    toml.write_text(
        f'[station]\ndata_dir = "{tmp_path / "data"}"\n'
        "[camera]\nwidth = 320\nheight = 240\nfps = 15\n"
        f"[web]\nport = {small.web.port}\n"
        "[retention]\nmin_age_days = 0.001\nfree_floor_mb = 1\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "station", "doctor", "--config", str(toml), "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    report = json.loads(run.stdout)
    assert schema_errors(report, SCHEMA) == []
    try:
        import jsonschema
    except ImportError:
        pass  # not installed here: the hand-written check above stands in
    else:
        jsonschema.validate(report, SCHEMA)
    assert run.returncode == 0 and report["ok"] is True
    # This machine's clock may or may not be NTP-synchronised; no CA and no TSA are warnings.
    warned = {c["name"] for c in report["checks"] if c["status"] != OK}
    assert {"certificate", "tsa"} <= warned <= {"clock", "certificate", "tsa"}
    assert report["counts"]["FAIL"] == 0 and len(report["checks"]) == len(doctor.CHECK_NAMES)
    assert not (tmp_path / "data").exists()  # the doctor only looks


def test_doctor_cli_text_and_usage_errors(small, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, "-m", "station", "doctor", "--data", str(tmp_path / "d")]
    skips = ["--skip", "camera", "--skip", "encoder", "--skip", "web-port"]
    text = subprocess.run([*base, *skips], capture_output=True, text=True, env=env, timeout=60,
                          check=False)  # fmt: skip
    assert text.stdout.startswith("packcam doctor: station 'station-01'")
    assert "camera" not in {
        line.split()[1] for line in text.stdout.splitlines()[1:-1] if line[:1] != " "
    }
    assert text.stdout.splitlines()[-1].endswith(" FAIL")
    bad = subprocess.run([*base, "--skip", "kamera"], capture_output=True, text=True, env=env,
                         timeout=60, check=False)  # fmt: skip
    assert bad.returncode == 2 and "unknown check(s) kamera" in bad.stderr


def test_pure_decisions() -> None:
    assert doctor.fps_status(27.0, 30) == OK and doctor.fps_status(26.9, 30) == WARN
    assert doctor.headroom_status(29.9, 30) == FAIL
    assert doctor.headroom_status(45, 30) == WARN and doctor.headroom_status(60, 30) == OK
    gib = 1024**3
    # 100 GiB free, 1 GiB floor, 0.5 MB/s for 8 h a day: 14.4 GB a day, ~7.4 days.
    status, days = doctor.disk_forecast(100 * gib, 500 * gib, gib, 0.5e6, 90)
    assert status == WARN and days == pytest.approx(99 * gib / 14.4e9)
    assert doctor.disk_forecast(100 * gib, 500 * gib, gib, 0.5e6, 7)[0] == OK
    assert doctor.disk_forecast(gib // 2, 500 * gib, gib, 0.5e6, 7) == (FAIL, 0.0)


def test_scanner_lines(small, monkeypatch) -> None:
    bus = FakeEvdev()
    bus.add("/dev/input/event4", "Honeywell Imaging & Mobility 1900")
    cfg = small.replace("scanner", keyboard="evdev")
    probes = Probes(evdev_module=bus, unreadable_inputs=bus.unreadable)
    ok = doctor.check_scanner(cfg, probes)
    assert (
        ok.status == OK
        and ok.message == "scanner 'Honeywell Imaging & Mobility 1900' at /dev/input/event4"
    )
    bus.denied.add("/dev/input/event4")
    denied = doctor.check_scanner(cfg, probes)
    assert denied.status == FAIL and "no scanner at any input device" in denied.message
    assert "add the service user to the input group" in denied.message
    assert denied.data["unreadable"] == ["/dev/input/event4"]
    named = doctor.check_scanner(cfg.replace("scanner", evdev_device="/dev/input/event4"), probes)
    assert named.status == FAIL and "may not open (/dev/input/event4)" in named.message
    none = doctor.check_scanner(
        cfg.replace("scanner", keyboard="none", camera_decode=False), probes
    )
    assert none.status == FAIL and "no way to scan" in none.message


def test_pedal_line_on_a_machine_without_gpio(small, monkeypatch) -> None:
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    check = doctor.check_pedal(small.replace("scanner", pedal_gpio=17), Probes())
    if Path("/dev/gpiochip0").exists():
        pytest.skip("this machine has GPIO")  # a Pi: the line is about real pins
    assert check.status == FAIL and "no /dev/gpiochip*" in check.message
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    assert doctor.check_pedal(small.replace("scanner", pedal_gpio=17), Probes()).status == WARN


def test_encoder_probe_sees_key_frames_and_a_missing_hardware_encoder(small) -> None:
    settings = EncoderSettings(320, 240, 15.0, bitrate_kbps=4000, keyframe_interval_s=2.0)
    fps, keys, size = doctor.encoder_probe(settings)
    assert len(keys) == 61 and [i for i, k in enumerate(keys) if k] == [0, 30, 60]
    assert fps > 15 and size > 0
    hw = doctor.check_encoder(small.replace("recorder", encoder="h264_v4l2m2m"), Probes())
    if Path("/dev/video11").exists():
        pytest.skip("this machine has a V4L2 encoder")
    assert hw.status == FAIL and "/dev/video11" in hw.message and "libx264" in hw.fix


def test_disk_line_uses_the_clips_recorded(small, tmp_path: Path) -> None:
    data = small.station.data_dir
    data.mkdir(parents=True)
    con = sqlite3.connect(data / "index.sqlite3")
    con.execute("CREATE TABLE clips (id INTEGER PRIMARY KEY, size INTEGER, duration_s REAL)")
    con.executemany("INSERT INTO clips (size, duration_s) VALUES (?, ?)",
                    [(30_000_000, 60.0), (10_000_000, 20.0)])  # fmt: skip
    con.commit()
    con.close()
    check = doctor.check_disk(small, Probes())
    assert check.data["bytes_per_s"] == 500_000 and "measured over the last clips" in check.message
    floor_cfg = small.replace("retention", free_floor_mb=10**9)  # a floor above any disk
    assert doctor.check_disk(floor_cfg, Probes()).status == FAIL


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "/login")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_web_port_and_central_lines(small, http_server: str) -> None:
    port = int(http_server.rsplit(":", 1)[1].strip("/"))
    used = doctor.check_web_port(small.replace("web", port=port), Probes(net_timeout_s=2))
    assert used.status == OK and "answers HTTP" in used.message
    with socket.socket() as silent:  # listens, never speaks HTTP
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        cfg = small.replace("web", port=silent.getsockname()[1])
        taken = doctor.check_web_port(cfg, Probes(net_timeout_s=0.3))
    assert taken.status == FAIL and "does not answer HTTP" in taken.message
    central = small.replace("central", enabled=True, url=http_server, token="t")
    assert doctor.check_central(central, Probes()).status == OK
    gone = small.replace("central", enabled=True, url=f"http://127.0.0.1:{free_port()}/", token="t")
    assert doctor.check_central(gone, Probes(net_timeout_s=1)).status == WARN


def test_tsa_line(small, tsa_rsa) -> None:  # noqa: F811
    up = doctor.check_tsa(small.replace("proof", tsa_urls=(tsa_rsa.url,)), Probes())
    assert up.status == OK and up.data["results"] == {tsa_rsa.url: "ok"}
    dead = f"http://127.0.0.1:{free_port()}/tsa"
    some = doctor.check_tsa(small.replace("proof", tsa_urls=(dead, tsa_rsa.url)), Probes())
    assert some.status == WARN and "unreachable" in some.message
    assert doctor.check_tsa(small.replace("proof", tsa_urls=(dead,)), Probes()).status == FAIL


def _cert(key: Ed25519PrivateKey, days: float) -> bytes:
    from cryptography.hazmat.primitives import serialization

    issuer_key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "station-01")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=400)).not_valid_after(now + timedelta(days=days))
        .sign(issuer_key, None)
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)


def test_signing_key_and_certificate_lines(small) -> None:
    from station.proof.paths import ProofPaths

    paths = ProofPaths.from_config(small)
    assert doctor.check_signing_key(small, Probes()).status == OK  # made at the first start
    paths.dir.mkdir(parents=True, mode=0o700)
    key, _ = StationKey.load_or_create(paths.key)
    line = doctor.check_signing_key(small, Probes())
    assert line.status == OK and key.fingerprint in line.message
    paths.key.chmod(0o644)
    assert doctor.check_signing_key(small, Probes()).status == WARN
    paths.key.chmod(0o600)
    paths.public_dir.mkdir(parents=True)
    paths.key_cert.write_bytes(_cert(key.private, 200))
    assert doctor.check_certificate(small, Probes()).status == OK
    paths.key_cert.write_bytes(_cert(key.private, 10))
    assert doctor.check_certificate(small, Probes()).status == WARN
    paths.key_cert.write_bytes(_cert(key.private, -1))
    assert "expired" in doctor.check_certificate(small, Probes()).message
    paths.key_cert.write_bytes(_cert(Ed25519PrivateKey.generate(), 200))
    other = doctor.check_certificate(small, Probes())
    assert other.status == FAIL and "certifies another key" in other.message
    paths.key.write_text("not a key")
    assert doctor.check_signing_key(small, Probes()).status == FAIL
    assert doctor.check_signing_key(small.replace("proof", enabled=False), Probes()).status == WARN


def test_a_crashing_check_is_a_fail_line_and_the_rest_still_run(small, monkeypatch) -> None:
    def boom(cfg, probes):
        raise RuntimeError("kaputt")

    monkeypatch.setitem(doctor.CHECKS, "clock", boom)
    checks = by_name(run_checks(small, skip={"camera", "encoder"}))
    assert checks["clock"].status == FAIL and "RuntimeError: kaputt" in checks["clock"].message
    assert checks["disk"].status == OK


def test_the_station_logs_the_checks_at_start_up(small, caplog) -> None:
    caplog.set_level(logging.INFO, logger="station.runtime.doctor")
    doctor.startup_checks(small, background=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "station.runtime.doctor"]
    names = [line.split()[2].rstrip(":") for line in lines]
    assert names == [n for n in doctor.CHECK_NAMES if n not in ("camera", "web-port")]
    assert any(line.startswith("doctor OK encoder") for line in lines)


def test_encoder_line_warns_when_key_frames_miss_the_interval_or_headroom_is_low(
    small, monkeypatch
) -> None:
    """What a Pi 4 whose driver kept its own I-period of 60 would report (probe stood in)."""
    hw = small.replace("recorder", encoder="h264_v4l2m2m", keyframe_interval_s=8.0)  # 120 frames
    keys = [i % 60 == 0 for i in range(241)]
    monkeypatch.setattr(doctor, "encoder_probe", lambda *a, **k: (200.0, keys, 10_000))
    line = doctor.check_encoder(hw, Probes())
    assert (
        line.status == WARN and "key frames every 60 frames, configured every 120" in line.message
    )
    assert line.data["level"] == "4.0" and line.data["headroom"] == pytest.approx(200 / 15, 0.01)
    good = [i % 120 == 0 for i in range(241)]
    monkeypatch.setattr(doctor, "encoder_probe", lambda *a, **k: (20.0, good, 10_000))
    slow = doctor.check_encoder(hw, Probes())
    assert slow.status == WARN and "too little headroom" in slow.fix
    monkeypatch.setattr(doctor, "encoder_probe", lambda *a, **k: (12.0, good, 10_000))
    assert doctor.check_encoder(hw, Probes()).status == FAIL


def test_start_up_checks_are_saved_for_the_dashboard(small) -> None:
    doctor.startup_checks(small, background=False)
    saved = small.station.data_dir / doctor.SELFCHECK_DIR / "station-01.json"
    report = json.loads(saved.read_text(encoding="utf-8"))
    assert schema_errors(report, SCHEMA) == []
    names = {c["name"] for c in report["checks"]}
    assert "camera" not in names and "web-port" not in names  # the station opens the camera
