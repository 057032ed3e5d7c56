"""`packcam doctor`: self-check of camera, scanner, pedal, encoder, disk, clock, keys, network."""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import logging
import os
import shutil
import socket
import sqlite3
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import station
from station.backends import build_camera
from station.capture.codes import safe_component
from station.capture.hardware.evdev_scanner import (
    permission_hint,
    scanner_report,
    unreadable_input_devices,
)
from station.config import Config
from station.errors import RecordingError, ScannerError, StationError
from station.proof import ProofError
from station.proof.keys import fingerprint
from station.proof.paths import ProofPaths
from station.proof.tsa import request_token
from station.recording.h264_limits import h264_level, i_period, keyframe_problem
from station.recording.writer import EncoderSettings, encode_test_frames
from station.runtime.clock import clock_synced
from station.store.clips import ClipTable
from station.store.files import write_json_atomic
from station.store.ledger import INDEX_NAME
from station.store.retention import Policy
from station.store.sqlitedb import Database

log = logging.getLogger(__name__)

OK, WARN, FAIL = "OK", "WARN", "FAIL"
STATUSES = (OK, WARN, FAIL)
CHECK_NAMES = (
    "camera",
    "scanner",
    "pedal",
    "encoder",
    "disk",
    "clock",
    "signing-key",
    "certificate",
    "tsa",
    "web-port",
    "archive",
    "central",
)
SCHEMA_VERSION = 1
HOURS_PER_DAY = 8.0  # recording hours a day assumed by the disk forecast
# Without clips to measure: libx264 crf 23 made 15.7 MB/min of the bench's busy 720p30 scene
# (docs/performance.md); scaled by pixels per second.
_X264_BYTES_PER_PIXEL_S = 15.7e6 / 60 / (1280 * 720 * 30)


@dataclass(frozen=True)
class Check:
    """One line of the report: a status, what was found, and how to fix it (WARN/FAIL)."""

    name: str
    status: str
    message: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Probes:
    """What the checks read from the machine; tests replace single probes."""

    clock_synced: Callable[[], bool | None] | None = None
    unreadable_inputs: Callable[[], list[str]] | None = None
    evdev_module: Any = None
    camera_seconds: float = 1.0
    net_timeout_s: float = 5.0


# ---- pure decisions -------------------------------------------------------------------------


def fps_status(measured: float, configured: float) -> str:
    """Frames arriving at 90 % of the configured rate or better are fine."""
    return OK if measured >= 0.9 * configured else WARN


def headroom_status(encode_fps: float, configured_fps: float) -> str:
    """The encoder also shares the CPU with capture, overlay and decoding: ask for 2x."""
    if encode_fps < configured_fps:
        return FAIL
    return OK if encode_fps >= 2 * configured_fps else WARN


def disk_forecast(
    free: int, total: int, floor: int, bytes_per_s: float, min_age_days: float
) -> tuple[str, float]:
    """(status, days of recording until the floor) at ``HOURS_PER_DAY`` hours a day.

    FAIL below the floor now; WARN when the disk reaches the floor before clips are old
    enough (``min_age_days``) for retention to delete them: new clips would be refused.
    """
    usable = free - floor
    if usable <= 0:
        return FAIL, 0.0
    days = usable / (bytes_per_s * HOURS_PER_DAY * 3600) if bytes_per_s > 0 else float("inf")
    return (WARN if days < min_age_days else OK), days


# ---- the checks -----------------------------------------------------------------------------


def check_camera(cfg: Config, probes: Probes) -> Check:

    c = cfg.camera
    want = f"{c.width}x{c.height}@{c.fps:g}"
    try:
        cam = build_camera(cfg, realtime=True)
        cam.start()
    except StationError as exc:
        return Check(
            "camera",
            FAIL,
            f"{c.backend} camera {c.source!r} not usable: {exc}",
            _camera_fix(c.backend),
        )
    frames = []
    try:
        deadline = time.monotonic() + probes.camera_seconds
        while time.monotonic() < deadline:
            frame = cam.read(max(c.read_timeout_s, 0.5))
            if frame is None:
                break
            frames.append((frame.t, frame.image.shape))
    except StationError as exc:
        return Check(
            "camera", FAIL, f"{c.backend} camera {c.source!r}: {exc}", _camera_fix(c.backend)
        )
    finally:
        cam.stop()
    if len(frames) < 2:
        return Check(
            "camera",
            FAIL,
            f"{c.backend} camera gave {len(frames)} frame(s)",
            _camera_fix(c.backend),
        )
    span = frames[-1][0] - frames[0][0]
    fps = (len(frames) - 1) / span if span > 0 else 0.0
    h, w = frames[-1][1][:2]
    actual = getattr(cam, "actual_size", None)
    data = {
        "backend": c.backend,
        "width": w,
        "height": h,
        "fps": round(fps, 2),
        "configured_fps": c.fps,
        "frames": len(frames),
    }
    note = ""
    if c.backend == "synthetic":
        note = "; synthetic camera: no real camera is used or checked"
    if actual and tuple(actual) != (c.width, c.height):
        note += f"; the sensor delivers {actual[0]}x{actual[1]}, scaled"
        data["sensor_size"] = list(actual)
    message = f"{c.backend} {w}x{h}: {fps:.1f} fps over {span:.1f} s (configured {want}){note}"
    if (w, h) != (c.width, c.height):
        return Check("camera", FAIL, message, "frames do not have the configured size", data)
    status = fps_status(fps, c.fps)
    fix = (
        ""
        if status == OK
        else (
            "frames arrive slower than configured: lower camera.fps or the size, check the light "
            "(long exposures cap the frame rate) and the CPU load"
        )
    )
    return Check("camera", status, message, fix, data)


def _camera_fix(backend: str) -> str:
    return {
        "picamera2": "check the ribbon cable and `rpicam-hello --list-cameras`; only one program "
        "may hold the camera (stop packcam-station first); docs/hardware.md",
        "opencv": "check camera.source (`v4l2-ctl --list-devices`, /dev/v4l/by-id/...) and that "
        "the user is in group video; docs/hardware.md",
    }.get(backend, "check [camera] in the config; docs/hardware.md")


def check_scanner(cfg: Config, probes: Probes) -> Check:

    sc = cfg.scanner
    listing = probes.unreadable_inputs or unreadable_input_devices
    if sc.keyboard != "evdev":
        if sc.keyboard == "none" and not sc.camera_decode:
            return Check(
                "scanner",
                FAIL,
                "no way to scan: keyboard = none and camera_decode off",
                'set scanner.keyboard = "evdev" or camera_decode = true',
            )
        how = {"none": "no USB scanner configured", "stdin": "scans read from standard input"}
        return Check(
            "scanner",
            OK,
            f"{how.get(sc.keyboard, sc.keyboard)}; barcodes under the "
            f"camera: {'on' if sc.camera_decode else 'off'}",
            data={"keyboard": sc.keyboard},
        )
    try:
        found, unreadable = scanner_report(sc.evdev_device, probes.evdev_module, listing)
    except ScannerError as exc:
        return Check("scanner", FAIL, str(exc), "sudo apt install python3-evdev (make venv)")
    data = {"keyboard": "evdev", "device": found[0] if found else None, "unreadable": unreadable}
    hint = permission_hint(unreadable)
    if found is None:
        where = sc.evdev_device or "any input device"
        if hint:
            return Check(
                "scanner",
                FAIL,
                f"no scanner at {where}; {hint}",
                "sudo usermod -aG input packcam-station",
                data,
            )
        return Check(
            "scanner",
            FAIL,
            f"no scanner at {where}",
            "plug it in; set scanner.evdev_device to its /dev/input/by-id path",
            data,
        )
    message = f"scanner {found[1]!r} at {found[0]}"
    if hint:
        return Check("scanner", WARN, f"{message}; {hint}", "", data)
    return Check("scanner", OK, message, data=data)


def check_pedal(cfg: Config, probes: Probes) -> Check:
    pin = cfg.scanner.pedal_gpio
    if pin < 0:
        return Check("pedal", OK, "no pedal configured (scanner.pedal_gpio = -1)")
    data: dict[str, Any] = {"pin": pin}
    if importlib.util.find_spec("gpiozero") is None:
        return Check(
            "pedal",
            FAIL,
            f"pedal on BCM {pin} but gpiozero is not installed",
            "sudo apt install python3-gpiozero python3-lgpio (make venv)",
            data,
        )
    if os.environ.get("GPIOZERO_PIN_FACTORY") == "mock":
        return Check(
            "pedal",
            WARN,
            f"pedal on BCM {pin}: GPIOZERO_PIN_FACTORY=mock, no real pin",
            "unset GPIOZERO_PIN_FACTORY on the station",
            data,
        )
    chips = sorted(glob.glob("/dev/gpiochip*"))
    data["chips"] = chips
    if not chips:
        return Check(
            "pedal",
            FAIL,
            f"pedal on BCM {pin} but this machine has no /dev/gpiochip*",
            "a Raspberry Pi is needed for the pedal, or set scanner.pedal_gpio = -1",
            data,
        )
    denied = [c for c in chips if not os.access(c, os.R_OK | os.W_OK)]
    if denied:
        return Check(
            "pedal",
            FAIL,
            f"pedal on BCM {pin}: may not open {', '.join(denied)}",
            "add the service user to group gpio",
            data,
        )
    return Check("pedal", OK, f"pedal on BCM {pin} ({', '.join(chips)} accessible)", data=data)


def encoder_probe(
    settings: EncoderSettings, *, frames: int | None = None
) -> tuple[float, list[bool], int]:
    """Encode synthetic frames as the station would with ``settings`` (libx264 on one
    thread); (frames per second, key-frame flags, bytes). Raises ``RecordingError`` when the
    encoder cannot be opened."""

    width, height = settings.width, settings.height
    period = i_period(settings.fps, settings.keyframe_interval_s)
    n = frames if frames is not None else 2 * period + 1
    y = np.add.outer(np.arange(height), np.arange(width)).astype(np.uint8)
    # A gently moving picture (no scene cuts that would add key frames of their own).
    planes = []
    for k in range(8):
        img = np.empty((height * 3 // 2, width), np.uint8)
        img[:height] = np.roll(y, 2 * k, axis=1)
        img[height:] = 128
        planes.append(img)
    packets, elapsed = encode_test_frames(settings, planes, n)
    keys = [bool(packet.is_keyframe) for packet in packets]
    size = sum(packet.size for packet in packets)
    return n / elapsed if elapsed > 0 else float("inf"), keys, size


def check_encoder(cfg: Config, probes: Probes, *, quick: bool = False) -> Check:

    r, c = cfg.recorder, cfg.camera
    period = i_period(c.fps, r.keyframe_interval_s)
    kind = "hardware" if r.encoder == "h264_v4l2m2m" else "software"
    # At start-up libx264 (which keeps its GOP) only gets a short speed test, so the station
    # does not lose frames to a long probe; the hardware encoder's key frames are checked.
    frames = None if not quick else (period + 1 if kind == "hardware" else min(period + 1, 30))
    settings = EncoderSettings.from_recorder(r, c.width, c.height, c.fps)
    try:
        fps, keys, size = encoder_probe(settings, frames=frames)
    except RecordingError as exc:
        return Check(
            "encoder", FAIL, str(exc), 'on a Pi 5 or a PC use recorder.encoder = "libx264"'
        )
    data: dict[str, Any] = {
        "encoder": r.encoder,
        "kind": kind,
        "fps": round(fps, 1),
        "headroom": round(fps / c.fps, 2),
        "i_period": period,
        "bytes_per_frame": round(size / max(1, len(keys))),
    }
    what = f"{r.encoder} ({kind}) {c.width}x{c.height}: {fps:.0f} fps, {fps / c.fps:.1f}x the "
    what += f"configured {c.fps:g} fps (one thread)" if kind == "software" else f"{c.fps:g} fps"
    if kind == "hardware":
        data["level"] = h264_level(c.width, c.height, c.fps, r.bitrate_kbps)
        what += f", level {data['level']}"
    else:
        hw_here = os.path.exists("/dev/video11")
        data["hardware_encoder_device"] = hw_here
        what += (" (a /dev/video11 encoder exists: on a Pi 4, h264_v4l2m2m frees the CPU)"
                 if hw_here else " (no hardware H.264 encoder on this machine)")  # fmt: skip
    problem = keyframe_problem(keys, period)
    if problem:
        data["keyframe_problem"] = problem
        return Check(
            "encoder",
            WARN,
            f"{what}; {problem}",
            "the encoder does not follow recorder.keyframe_interval_s: clips still play, "
            "but pre-roll and seeking get coarser; report it with this output",
            data,
        )
    what += f"; key frames every {period} frames as configured"
    status = headroom_status(fps, c.fps)
    fix = (
        ""
        if status == OK
        else (
            "too little headroom: lower camera size or fps"
            + (", or use the Pi 4's h264_v4l2m2m" if kind == "software" else "")
        )
    )
    return Check("encoder", status, what, fix, data)


def _existing_dir(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _measured_bytes_per_s(data_dir: Path) -> float | None:

    index = data_dir / INDEX_NAME
    if not index.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=2.0)
        try:
            size, secs = ClipTable(Database(con)).recent_size_and_duration(200)
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return size / secs if size and secs and secs > 60 else None


def check_disk(cfg: Config, probes: Probes) -> Check:

    data_dir = cfg.station.data_dir
    where = _existing_dir(data_dir)
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return Check("disk", FAIL, f"cannot read the disk of {data_dir}: {exc}", "check the mount")
    floor = Policy.from_config(cfg.retention, archiving=cfg.archive.enabled).floor(usage.total)
    measured = _measured_bytes_per_s(data_dir)
    c, r = cfg.camera, cfg.recorder
    if measured is not None:
        rate, basis = measured, "measured over the last clips"
    elif r.encoder == "h264_v4l2m2m":
        rate, basis = r.bitrate_kbps * 1000 / 8, f"{r.bitrate_kbps} kb/s"
    else:
        rate = _X264_BYTES_PER_PIXEL_S * c.width * c.height * c.fps
        basis = "a libx264 estimate: no clips yet"
    status, days = disk_forecast(usage.free, usage.total, floor, rate, cfg.retention.min_age_days)
    gib = 1024**3
    data = {
        "path": str(where),
        "free_bytes": usage.free,
        "total_bytes": usage.total,
        "floor_bytes": floor,
        "bytes_per_s": round(rate),
        "days_to_floor": round(days, 1),
        "hours_per_day": HOURS_PER_DAY,
    }
    message = (
        f"{where}: {usage.free / gib:.1f} of {usage.total / gib:.1f} GiB free (floor "
        f"{floor / gib:.1f} GiB); at {rate / 1e6:.2f} MB/s ({basis}) and "
        f"{HOURS_PER_DAY:g} h a day that lasts {days:.0f} days"
    )
    if status == FAIL:
        return Check(
            "disk",
            FAIL,
            message,
            "free space or lower retention.free_floor_mb; new clips are refused below the floor",
            data,
        )
    if status == WARN:
        return Check(
            "disk",
            WARN,
            message + f", less than retention.min_age_days "
            f"({cfg.retention.min_age_days:g}): clips would be refused before old ones "
            "may go",
            "a bigger disk (a USB SSD, docs/raspberry-pi.md), a lower "
            "bitrate, or archive and a shorter min_age_days",
            data,
        )
    return Check("disk", OK, message, data=data)


def check_clock(cfg: Config, probes: Probes) -> Check:

    synced = (probes.clock_synced or clock_synced)()
    if synced:
        return Check("clock", OK, "system clock NTP-synchronised", data={"synced": True})
    fix = (
        "`timedatectl` must say `System clock synchronized: yes`: let systemd-timesyncd "
        "reach an NTP server (/etc/systemd/timesyncd.conf)"
    )
    if synced is None:
        return Check(
            "clock", WARN, "cannot tell whether the clock is synchronised", fix, {"synced": None}
        )
    return Check(
        "clock",
        WARN,
        "system clock NOT synchronised: manifests will say so",
        fix,
        {"synced": False},
    )


def check_signing_key(cfg: Config, probes: Probes) -> Check:

    if not cfg.proof.enabled:
        return Check(
            "signing-key",
            WARN,
            "proof.enabled = false: clips are hashed, not signed",
            "set proof.enabled = true",
        )
    path = ProofPaths.from_config(cfg).key
    try:
        st = path.stat()
        pem = path.read_bytes()
    except FileNotFoundError:
        return Check(
            "signing-key",
            OK,
            f"no station key yet at {path}: it is created at the first "
            "start (or now: `packcam keys init`)",
            data={"path": str(path)},
        )
    except PermissionError:
        return Check(
            "signing-key",
            FAIL,
            f"may not read {path}",
            "run as the station's user: sudo -u packcam-station packcam doctor ...",
            {"path": str(path)},
        )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        return Check(
            "signing-key",
            FAIL,
            f"{path} is not a usable key: {exc}",
            "restore it from backup; a new key needs a new certificate",
            {"path": str(path)},
        )
    if not isinstance(key, Ed25519PrivateKey):
        return Check("signing-key", FAIL, f"{path} is not an Ed25519 key", "packcam keys init")
    fp = fingerprint(key.public_key())
    data = {"path": str(path), "fingerprint": fp}
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return Check(
            "signing-key",
            WARN,
            f"{path} ({fp}) has mode {mode:o}",
            f"chmod 600 {path} (the station also does this at start)",
            data,
        )
    return Check("signing-key", OK, f"Ed25519 station key {fp}", data=data)


def check_certificate(cfg: Config, probes: Probes, now: datetime | None = None) -> Check:

    paths = ProofPaths.from_config(cfg)
    if not paths.key_cert.exists():
        # Without it no verifier can ever call this station's evidence AUTHENTIC: the key is
        # then vouched for by nothing but the bundle that carries it (docs/proof.md).
        return Check(
            "certificate",
            WARN,
            f"no company-CA certificate for the station key ({paths.key_cert}): its clips can"
            " verify only as 'intact, not anchored', never as authentic",
            "on the CA machine `packcam ca issue STATION --station-key PUB.pem --out DIR`, copy"
            " the files to the station (docs/proof.md)",
        )
    try:
        cert = x509.load_pem_x509_certificate(paths.key_cert.read_bytes())
    except (OSError, ValueError) as exc:
        return Check("certificate", FAIL, f"{paths.key_cert}: {exc}", "reinstall it from the CA")
    now = now or datetime.now(UTC)
    left = (cert.not_valid_after_utc - now).total_seconds() / 86400
    data = {
        "path": str(paths.key_cert),
        "subject": cert.subject.rfc4514_string(),
        "days_left": round(left, 1),
    }

    def raw(k: Any) -> bytes:  # an Ed25519 key; the loaders return a union of key types
        out: bytes = k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return out

    try:
        key_pub = serialization.load_pem_private_key(paths.key.read_bytes(), None).public_key()
        if raw(cert.public_key()) != raw(key_pub):
            return Check(
                "certificate",
                FAIL,
                f"{paths.key_cert} certifies another key",
                "issue a certificate for this station's key (packcam ca issue)",
                data,
            )
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # no readable key: the signing-key line says why
    if left < 0:
        return Check(
            "certificate",
            FAIL,
            f"{paths.key_cert} expired {-left:.0f} days ago",
            "packcam ca issue a new one",
            data,
        )
    if left < 30:
        return Check(
            "certificate",
            WARN,
            f"{paths.key_cert} expires in {left:.0f} days",
            "packcam ca issue a new one",
            data,
        )
    return Check("certificate", OK, f"{data['subject']}, {left:.0f} days left", data=data)


def check_tsa(cfg: Config, probes: Probes) -> Check:

    urls = cfg.proof.tsa_urls
    if not urls or not cfg.proof.enabled:
        return Check(
            "tsa",
            WARN,
            "no timestamp authority configured: clip times rest on this station's clock alone,"
            " so no clip can verify as authentic",
            "set proof.tsa_urls (and proof.tsa_ca_path) to an RFC 3161 TSA (docs/proof.md)",
        )
    results = {}
    for url in urls:
        try:
            request_token(
                url,
                hashlib.sha256(b"packcam doctor").digest(),
                timeout=min(probes.net_timeout_s, cfg.proof.tsa_timeout_s),
            )
            results[url] = "ok"
        except ProofError as exc:
            results[url] = str(exc)
    bad = {u: e for u, e in results.items() if e != "ok"}
    data = {"results": results}
    if not bad:
        return Check("tsa", OK, f"{len(urls)} TSA(s) answered: {', '.join(urls)}", data=data)
    status = FAIL if len(bad) == len(urls) else WARN
    return Check(
        "tsa",
        status,
        "; ".join(bad.values()),
        "check the network/proxy to the TSA; tokens are queued and retried meanwhile",
        data,
    )


def check_web_port(cfg: Config, probes: Probes) -> Check:
    host, port = cfg.web.host, cfg.web.port
    data = {"host": host, "port": port}
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return Check("web-port", FAIL, f"web.host {host!r}: {exc}", "fix web.host", data)
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
            return Check(
                "web-port",
                OK,
                f"{host}:{port} is free (the web site is not running here now)",
                data=data,
            )
        except PermissionError:
            return Check(
                "web-port",
                FAIL,
                f"may not listen on {host}:{port}",
                "use a port above 1023 or a reverse proxy",
                data,
            )
        except OSError:
            pass
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    code = _http_status(url, probes.net_timeout_s)
    data["http_status"] = code
    if code is not None:
        return Check(
            "web-port",
            OK,
            f"{host}:{port} in use; {url} answers HTTP {code} (the web site, if it is packcam's)",
            data=data,
        )
    return Check(
        "web-port",
        FAIL,
        f"{host}:{port} is taken by something that does not answer HTTP",
        "stop it (`ss -ltnp`) or choose another web.port",
        data,
    )


def _http_status(url: str, timeout: float) -> int | None:
    host = urllib.parse.urlsplit(url).hostname or ""
    proxies: dict[str, str] | None = {} if host in {"127.0.0.1", "localhost", "::1"} else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
    try:
        with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _tcp_reachable(url: str, timeout: float) -> str | None:
    """None when a TCP connection to ``url``'s host and port opens; else why not."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{parts.hostname}:{port}: {exc}"


def check_archive(cfg: Config, probes: Probes) -> Check:
    a = cfg.archive
    if not a.enabled:
        return Check("archive", OK, "archive upload off (archive.enabled = false)")
    if importlib.util.find_spec("boto3") is None:
        return Check(
            "archive",
            FAIL,
            "archive on but boto3 is not installed",
            "make EXTRAS=pi,fleet venv (a PC: EXTRAS=fleet); docs/dependencies.md",
        )
    endpoint = a.endpoint_url or f"https://s3.{a.region}.amazonaws.com/"
    why = _tcp_reachable(endpoint, probes.net_timeout_s)
    data = {"endpoint": endpoint, "bucket": a.bucket}
    if why:
        return Check(
            "archive",
            WARN,
            f"object store unreachable: {why}; clips wait on the disk",
            "check the network and archive.endpoint_url",
            data,
        )
    return Check(
        "archive", OK, f"object store {endpoint} reachable (bucket {a.bucket!r})", data=data
    )


def check_central(cfg: Config, probes: Probes) -> Check:
    c = cfg.central
    if not c.enabled:
        return Check("central", OK, "central index off (central.enabled = false)")
    code = _http_status(c.url, min(probes.net_timeout_s, c.timeout_s))
    data = {"url": c.url, "http_status": code}
    if code is None:
        return Check(
            "central",
            WARN,
            f"central site {c.url} unreachable; clips are registered when it is back",
            "check the network and central.url",
            data,
        )
    return Check("central", OK, f"central site {c.url} answers HTTP {code}", data=data)


CHECKS: dict[str, Callable[[Config, Probes], Check]] = {
    "camera": check_camera,
    "scanner": check_scanner,
    "pedal": check_pedal,
    "encoder": check_encoder,
    "disk": check_disk,
    "clock": check_clock,
    "signing-key": check_signing_key,
    "certificate": check_certificate,
    "tsa": check_tsa,
    "web-port": check_web_port,
    "archive": check_archive,
    "central": check_central,
}


def run_checks(
    cfg: Config, *, skip: Iterable[str] = (), probes: Probes | None = None, quick: bool = False
) -> list[Check]:
    """Every check in ``CHECK_NAMES`` order except ``skip``; a check that crashes is a FAIL."""
    probes = probes or Probes()
    skipped = set(skip)
    out = []
    for name in CHECK_NAMES:
        if name in skipped:
            continue
        try:
            if name == "encoder":
                out.append(check_encoder(cfg, probes, quick=quick))
            else:
                out.append(CHECKS[name](cfg, probes))
        except Exception as exc:  # one broken check must not hide the others
            log.debug("check %s crashed", name, exc_info=True)
            out.append(
                Check(
                    name,
                    FAIL,
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    "report this output",
                )
            )
    return out


def report_dict(cfg: Config, checks: Sequence[Check]) -> dict[str, Any]:

    counts = {s: sum(1 for c in checks if c.status == s) for s in STATUSES}
    return {
        "schema": SCHEMA_VERSION,
        "packcam": station.__version__,
        "station": cfg.station.name,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "ok": counts[FAIL] == 0,
        "counts": counts,
        "checks": [c.to_dict() for c in checks],
    }


def render_text(cfg: Config, checks: Sequence[Check]) -> str:
    lines = [f"packcam doctor: station {cfg.station.name!r}, data {cfg.station.data_dir}"]
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<11}  {c.message}")
        if c.fix:
            lines.append(f"{'':<4}  {'':<11}  fix: {c.fix}")
    counts = {s: sum(1 for c in checks if c.status == s) for s in STATUSES}
    lines.append(f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL")
    return "\n".join(lines)


def log_checks(checks: Sequence[Check]) -> None:
    level = {OK: logging.INFO, WARN: logging.WARNING, FAIL: logging.ERROR}
    for c in checks:
        log.log(
            level[c.status],
            "doctor %s %s: %s%s",
            c.status,
            c.name,
            c.message,
            f" (fix: {c.fix})" if c.fix else "",
        )


SELFCHECK_DIR = Path("live") / "doctor"  # under the data dir: <station>.json, read by the web


def save_report(cfg: Config, checks: Sequence[Check]) -> Path:
    """Write the report where the station's web dashboard shows it (atomically)."""

    path = cfg.station.data_dir / SELFCHECK_DIR / f"{safe_component(cfg.station.name, 32)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, report_dict(cfg, checks))
    return path


def startup_checks(cfg: Config, *, background: bool = True) -> threading.Thread | None:
    """The station's start-up self-check: every check but the camera (the station opens it
    itself) and the web port (the web site, a service of its own that may be binding it this
    very moment, reports that), with a short encoder probe; logged and saved for the web
    dashboard (``save_report``), never fatal. In a thread
    by default, so the station starts without waiting for the network checks."""

    def run() -> None:
        try:
            probes = Probes(net_timeout_s=3.0)
            checks = run_checks(cfg, skip={"camera", "web-port"}, quick=True, probes=probes)
            log_checks(checks)
            save_report(cfg, checks)
        except Exception:
            log.exception("start-up checks failed")

    if not background:
        run()
        return None
    thread = threading.Thread(target=run, name="startup-checks", daemon=True)
    thread.start()
    return thread


__all__ = [
    "CHECK_NAMES",
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "Probes",
    "disk_forecast",
    "fps_status",
    "headroom_status",
    "render_text",
    "report_dict",
    "run_checks",
    "startup_checks",
]
