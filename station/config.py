"""One frozen, typed config loaded from TOML; unknown keys and bad values fail at start-up."""

from __future__ import annotations

import dataclasses
import re
import shlex
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from station.errors import ConfigError
from station.h264_limits import hw_size_problem

# Waybill (tracking number) shapes of the major Chinese carriers. They are heuristics: a
# warehouse whose own order IDs look like these sets [codes] order_patterns, which win.
DEFAULT_WAYBILL_PATTERNS: dict[str, str] = {
    "SF": r"^SF\d{12,13}$",
    "YTO": r"^YT\d{13,16}$",
    "JD": r"^JD[A-Z0-9]{11,18}$",
    "JT": r"^JT\d{13}$",
    "EMS": r"^(?:E[A-Z]\d{9}CN|1\d{12})$",
    "STO": r"^(?:77|88|268|368)\d{10,12}$",
    "YUNDA": r"^(?:31|43|46)\d{11}$",
    "ZTO": r"^(?:7[0-9]|5[0-9]|6[0-9])\d{10,13}$",
}


@dataclass(frozen=True)
class StationSection:
    name: str = "station-01"
    data_dir: Path = Path("/var/lib/packcam")
    # IANA zone for the overlay and file names; "" means the machine's local zone.
    timezone: str = ""


# The lists of choices, each defined here once (station.camera and station.writer use them).
# Frame sources and keyboard scanners: station/backends.py registers a factory for each ("mock":
# the picamera2 / evdev adapters on the mock libraries shipped in station/hardware/).
CAMERA_BACKENDS = ("synthetic", "opencv", "picamera2", "mock")
KEYBOARDS = ("none", "stdin", "evdev", "mock")
# The encoders a clip may be written with. libx264 (software, every machine) is the default;
# h264_v4l2m2m is FFmpeg's wrapper of a V4L2 memory-to-memory encoder, on a Raspberry Pi 4 the
# SoC's bcm2835-codec at /dev/video11 (a Pi 5 has no H.264 encoder in hardware).
ENCODERS = ("libx264", "h264_v4l2m2m")
HARDWARE_ENCODERS = frozenset({"h264_v4l2m2m"})


@dataclass(frozen=True)
class CameraSection:
    backend: str = "synthetic"  # one of CAMERA_BACKENDS: synthetic | opencv | picamera2
    # opencv: device index ("0"), V4L2 path, RTSP URL or video file. picamera2: camera number.
    source: str = "0"
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    # synthetic: path to a scenario TOML; "" = the endless built-in demo script.
    scenario: str = ""
    # seconds without a frame before the camera counts as lost
    read_timeout_s: float = 5.0
    # "bgr", or "i420": the camera delivers planar YUV420 and the station overlays, encodes
    # and reads barcodes (from the Y plane) without converting to BGR (synthetic, picamera2)
    pixel_format: str = "bgr"


@dataclass(frozen=True)
class ScannerSection:
    camera_decode: bool = True
    decode_every: int = 3  # decode every Nth frame in a worker thread
    # decode only what changed since the last look (and where codes were just read) ...
    decode_changes_only: bool = True
    full_decode_every_s: float = 2.0  # ... and the whole frame at least this often
    # a camera read becomes a scan once read in this many different frames (model-based
    # stages: one more); see docs/barcodes.md
    confirm_looks: int = 2
    keyboard: str = "none"  # none | stdin | evdev | mock
    evdev_device: str = ""  # /dev/input/eventN or by-id path; "" = auto-detect a scanner
    evdev_grab: bool = True
    pedal_gpio: int = -1  # BCM pin of a foot pedal / button to ground; -1 = none


# What the camera's decoders report (station/barcodes.py); an ISBN is an "ean13" (978/979...).
CAMERA_SYMBOLOGIES = ("code128", "code39", "qrcode", "datamatrix", "ean13", "ean8", "upca", "upce")


@dataclass(frozen=True)
class CodesSection:
    # Regexes for order IDs. Empty: any code that is no seal, control or waybill is an order.
    order_patterns: tuple[str, ...] = ()
    # Symbologies the camera takes order IDs from. Camera reads of product codes (EAN-13/8,
    # UPC-A/E, so ISBN too) not listed here are items, never orders; keyboard scans have no
    # symbology and are classified by text alone.
    order_symbologies: tuple[str, ...] = ("code128", "code39", "qrcode", "datamatrix")
    waybill_patterns: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_WAYBILL_PATTERNS))
    seal_codes: tuple[str, ...] = ("SEAL", "封箱")
    # code -> command; commands: "seal" (end the clip like the pedal), "test" (log only)
    control_codes: dict[str, str] = field(default_factory=dict)
    # Packer badges (issue 13): a code matching one of these signs its packer in (the text
    # after the match is the packer's name); a sign-out card signs the packer out.
    operator_patterns: tuple[str, ...] = ("^OP[:-]",)
    signout_codes: tuple[str, ...] = ("SIGNOUT", "签退")
    # Returns: this card, or a waybill matching return_patterns, makes the next clip a return.
    return_codes: tuple[str, ...] = ("RETURN", "退货")
    return_patterns: tuple[str, ...] = ()
    debounce_s: float = 3.0
    max_length: int = 64


@dataclass(frozen=True)
class SessionSection:
    pre_roll_s: float = 3.0
    max_duration_s: float = 600.0
    still_timeout_s: float = 0.0  # 0 = off
    waybill_ends_clip: bool = False
    require_packer: bool = False  # refuse an order scan while no packer is signed in


@dataclass(frozen=True)
class RecorderSection:
    preset: str = "ultrafast"
    crf: int = 23
    keyframe_interval_s: float = 4.0
    fsync_interval_s: float = 1.0
    overlay: bool = True
    font: str = ""  # TTF/OTF/TTC with CJK glyphs; "" = search the usual system fonts
    overlay_language: str = "en"  # labels on the overlay: "en", "zh" (订单/运单) or "zh+en"
    # "libx264" (software, any machine; preset + crf) or "h264_v4l2m2m" (a Raspberry Pi 4's
    # hardware encoder at /dev/video11; a Pi 5 has none). Tried at start-up; never swapped.
    encoder: str = "libx264"
    bitrate_kbps: int = 4000  # h264_v4l2m2m only: it is bitrate-controlled and has no crf


@dataclass(frozen=True)
class WebSection:
    host: str = "127.0.0.1"
    port: int = 8080
    # Flask secret (sessions, CSRF, share links); "" = <data_dir>/web-secret, made once (0600).
    secret_key_file: str = ""
    # Secure flag on cookies: "auto" = when the request came over HTTPS, "always", "never".
    secure_cookies: str = "auto"
    # Behind one reverse proxy (nginx, caddy) that sets X-Forwarded-For/-Proto/-Host.
    trust_proxy: bool = False
    session_hours: float = 12.0  # a login lasts this long, then the user logs in again
    idle_minutes: float = 60.0  # ... and ends sooner after this long without a request; 0 = never
    share_max_days: float = 30.0  # longest lifetime a share link may be given
    default_language: str = "en"  # en | zh_CN, when the browser asks for neither
    threads: int = 16  # waitress worker threads (each open video or live stream holds one)
    live_max_s: float = 600.0  # a live MJPEG stream ends after this many seconds
    stale_after_s: float = 30.0  # a station silent this long "stopped reporting"
    # The public /verify upload (web/uploads.py): spooled under <data_dir>/spool/verify.
    verify_max_mb: int = 1024  # largest clip or bundle accepted
    verify_spool_mb: int = 2048  # most it may hold on the data disk at once (uploads + unzipped)
    verify_headroom_mb: int = 512  # kept free above the station's retention floor, always
    verify_unzipped_mb: int = 2048  # most a bundle's clips may unpack to
    verify_max_members: int = 500  # most files a bundle may hold
    verify_parallel: int = 2  # uploads received or checked at once
    verify_per_hour: int = 30  # uploads per remote address (an IPv6 /64) per hour
    bundle_cache_mb: int = 2048  # evidence bundles kept for resumed downloads (<data>/exports)


@dataclass(frozen=True)
class ProofSection:
    """Signed manifests, the Merkle log, RFC 3161 timestamps and C2PA (station/proof/)."""

    enabled: bool = True
    # Paths; "" means the default file under <data_dir>/proof/.
    key_path: str = ""  # Ed25519 station key (mode 0600), created on first run
    key_cert_path: str = ""  # the company CA's certificate for that key
    c2pa_cert_path: str = ""  # ES256 station certificate chain (leaf first) for C2PA
    c2pa_key_path: str = ""  # its private key
    ca_cert_path: str = ""  # the company root CA certificate (trust anchor for verifying)
    c2pa: bool = False  # embed a C2PA manifest in each clip (needs c2pa-python and the cert)
    tsa_urls: tuple[str, ...] = ()  # RFC 3161 timestamp authorities, tried in order
    tsa_ca_path: str = ""  # PEM roots that timestamp tokens must chain to
    tsa_timeout_s: float = 10.0
    tsa_retry_s: float = 60.0  # first retry delay when a TSA is unreachable (then doubling)
    # Sign a log checkpoint after this many clips. 1: every clip is covered at once, so its
    # evidence bundle can be exported from the web site right after recording.
    checkpoint_every: int = 1
    # ...and at least every this many minutes, even when idle, each one timestamped: a log
    # rolled back later contradicts a checkpoint a TSA (or the central witness) already saw.
    checkpoint_interval_min: float = 10.0


@dataclass(frozen=True)
class ArchiveSection:
    """Upload finished clips and their proofs to S3-compatible object storage (station/archiver)."""

    enabled: bool = False
    # "" = AWS S3 itself; else the store's URL: MinIO/SeaweedFS/Garage http(s)://host:port,
    # Aliyun OSS https://oss-cn-hangzhou.aliyuncs.com (S3 API).
    endpoint_url: str = ""
    region: str = "us-east-1"  # Garage: "garage"; OSS: "oss-cn-hangzhou" etc.
    bucket: str = ""
    prefix: str = "packcam/"  # every object key starts with this
    # "" = boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, instance role)
    access_key_id: str = ""
    secret_access_key: str = ""
    addressing_style: str = "auto"  # auto | path (MinIO, SeaweedFS, Garage) | virtual (OSS)
    object_lock_mode: str = ""  # "" | GOVERNANCE | COMPLIANCE (bucket needs Object Lock on)
    object_lock_days: int = 0  # retain each object this many days (with a mode)
    max_bytes_per_s: int = 0  # upload bandwidth cap (token bucket); 0 = unlimited
    part_size_mb: int = 8  # multipart part size; files above it go multipart (min 5)
    checksum: str = "sha256"  # sha256 (x-amz-checksum-sha256) | md5 (Content-MD5 only)
    verify_download: bool = False  # also read every object back and hash it after upload
    keyframes: bool = True  # upload JPEG key frames (start, scans, end) beside each clip
    scan_interval_s: float = 60.0  # look for unarchived clips this often (and at start)
    retry_s: float = 10.0  # first retry delay after a failed upload (then doubling, max 15 min)
    timeout_s: float = 30.0  # connect/read timeout of one request
    # central web: clips stream through the site ("proxy", Range passed through) or the
    # browser is sent to a presigned URL ("redirect"; the store must be reachable from it)
    stream: str = "proxy"
    presign_s: int = 300  # lifetime of a presigned URL (redirect mode)


@dataclass(frozen=True)
class CentralSection:
    """The central index: stations register clips with it; ``packcam web --central`` serves it."""

    # station side
    enabled: bool = False  # register clips, checkpoints and health with the central server
    url: str = ""  # the central site, e.g. https://packcam.example.com/
    token: str = ""  # from `packcam central add-station NAME` on the central server
    token_file: str = ""  # or read the token from this file (wins over token)
    interval_s: float = 5.0  # push what is new this often (at once after a clip)
    batch: int = 200  # clips per request
    timeout_s: float = 10.0
    # Ask the central index whether an order scanned here was recorded at another station
    # (a repack linked to those clips; station/duplicates.py), never waiting longer than this.
    duplicate_check: bool = True
    duplicate_timeout_s: float = 1.5
    # central server side
    dsn: str = ""  # PostgreSQL conninfo; "" = $PACKCAM_CENTRAL_DSN


@dataclass(frozen=True)
class RetentionSection:
    """What may be deleted when space runs out, and the disk-space floor (station/retention.py)."""

    min_age_days: float = 90.0  # never delete a clip younger than this (dispute windows)
    min_age_days_return: float = -1.0  # the same for return (unboxing) clips; < 0 = min_age_days
    # Keep at least this much free; the floor is the larger of the two (0 = that one is off).
    free_floor_mb: int = 1024
    free_floor_percent: float = 0.0
    check_every_s: float = 30.0  # free-space check interval (also after every clip)
    archive_required: bool = False  # delete only clips already archived ([archive])
    # Run on every disk-full / recording alarm, with the message as last argument (beeper, LED).
    alarm_command: str = ""


@dataclass(frozen=True)
class AlertsSection:
    """Central site: fleet alerts (`packcam central alerts`), de-duplicated, by webhook and mail."""

    webhook_url: str = ""  # POST {"events": [...]}, HMAC-SHA256-signed (docs/fleet.md)
    webhook_secret: str = ""
    webhook_secret_file: str = ""  # or read the secret from this file (wins)
    smtp_host: str = ""  # "" = no e-mail
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_user: str = ""
    smtp_password_file: str = ""
    mail_from: str = ""
    mail_to: tuple[str, ...] = ()
    repeat_hours: float = 24.0  # remind of a condition still true this often (0 = never)
    silent_after_s: float = 300.0  # a station not heard from this long is "silent"
    backlog_clips: int = 200  # alert when this many clips wait to be archived
    disk_free_mb: int = 2048  # alert when a station has less free space


@dataclass(frozen=True)
class FeedbackSection:
    """Sounds at the station on each scan, seal and alarm (station/feedback.py)."""

    output: str = "none"  # none | alsa (aplay to `device`) | log (<data>/sounds.log, no speaker)
    device: str = "default"  # ALSA device: "default", "plughw:CARD=Headphones", "hdmi:0", ...
    player: str = "aplay"  # the ALSA player (alsa-utils)
    volume: float = 0.5  # 0-1, of full scale
    voice: str = "none"  # none | en | zh: a spoken prompt after each tone (espeak-ng renders once)
    sounds_dir: str = ""  # "" = <data_dir>/sounds; may hold pre-rendered prompt-<voice>-*.wav


@dataclass(frozen=True)
class LookupSection:
    """Fetch each order's items from the seller's system as its clip starts (station/lookup.py)."""

    # GET this URL on each order scan, "{order}" replaced by the URL-quoted order ID; "" = off.
    url_template: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {Authorization = "Bearer ..."}
    timeout_s: float = 2.0


@dataclass(frozen=True)
class ScreenSection:
    """The full-screen station page (/screen) on the station's HDMI display (web/screen.py)."""

    allow_localhost: bool = True  # the kiosk browser on the station itself needs no login
    token: str = ""  # 16+ characters: /screen/<station>?token=... works from other machines too
    # Packers who may sign in on the screen by picking their name (no PIN: docs/integration.md);
    # none = no sign-in on the screen, badges only.
    packers: tuple[str, ...] = ()


WEBHOOK_EVENTS = ("clip.finished", "clip.failed", "clip.archived", "alarm.raised", "alarm.cleared")


@dataclass(frozen=True)
class WebhooksSection:
    """Signed POSTs to the seller's systems from a durable queue (station/webhooks.py)."""

    urls: tuple[str, ...] = ()  # each event is POSTed to every URL; none = off
    secret: str = ""  # HMAC-SHA256 key (16+ characters) ...
    secret_file: str = ""  # ... or a file holding it (wins)
    events: tuple[str, ...] = ("clip.finished", "clip.archived", "alarm.raised", "alarm.cleared")
    timeout_s: float = 5.0
    retry_s: float = 10.0  # first retry after this, doubling ...
    max_backoff_s: float = 3600.0  # ... up to this
    max_attempts: int = 30  # then the delivery is "failed" (kept in the log)


@dataclass(frozen=True)
class Config:
    station: StationSection = field(default_factory=StationSection)
    camera: CameraSection = field(default_factory=CameraSection)
    scanner: ScannerSection = field(default_factory=ScannerSection)
    codes: CodesSection = field(default_factory=CodesSection)
    session: SessionSection = field(default_factory=SessionSection)
    recorder: RecorderSection = field(default_factory=RecorderSection)
    web: WebSection = field(default_factory=WebSection)
    proof: ProofSection = field(default_factory=ProofSection)
    archive: ArchiveSection = field(default_factory=ArchiveSection)
    central: CentralSection = field(default_factory=CentralSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    feedback: FeedbackSection = field(default_factory=FeedbackSection)
    webhooks: WebhooksSection = field(default_factory=WebhooksSection)
    lookup: LookupSection = field(default_factory=LookupSection)
    screen: ScreenSection = field(default_factory=ScreenSection)

    def with_data_dir(self, data_dir: Path | str) -> Config:
        """The same config with ``station.data_dir`` replaced (the CLI's ``--data``)."""
        station = dataclasses.replace(self.station, data_dir=Path(data_dir))
        return dataclasses.replace(self, station=station)

    def replace(self, section: str, **values: Any) -> Config:
        """The same config with some values of one section replaced, validated again."""
        new = dataclasses.replace(getattr(self, section), **values)
        cfg = dataclasses.replace(self, **{section: new})
        validate(cfg)
        return cfg


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path string, got {value!r}")
        return Path(value).expanduser()
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{where}: expected a table of strings, got {value!r}")
        return dict(value)
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # programming error


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} in [{where}]: {', '.join(unknown)}"
            f" (allowed: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}] must be a table")
            kwargs[name] = _build(tp, value, name)
        else:
            kwargs[name] = _coerce(value, tp, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _check_regex(pattern: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where}: invalid regular expression {pattern!r}: {exc}") from exc


def validate(cfg: Config) -> None:
    """Raise ConfigError for values that parse but make no sense."""
    s = cfg.station
    if not s.name.strip() or len(s.name) > 64 or any(ord(c) < 32 for c in s.name):
        raise ConfigError("station.name must be 1-64 printable characters")
    if s.timezone:
        try:
            ZoneInfo(s.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"station.timezone: unknown time zone {s.timezone!r}") from exc
    c = cfg.camera
    if c.backend not in CAMERA_BACKENDS:
        raise ConfigError(
            f"camera.backend must be {', '.join(CAMERA_BACKENDS[:-1])} or {CAMERA_BACKENDS[-1]},"
            f" not {c.backend!r}"
        )
    if not (16 <= c.width <= 7680 and 16 <= c.height <= 4320) or c.width % 2 or c.height % 2:
        raise ConfigError("camera.width/height must be even and between 16x16 and 7680x4320")
    if not 1 <= c.fps <= 120:
        raise ConfigError("camera.fps must be between 1 and 120")
    if c.read_timeout_s <= 0:
        raise ConfigError("camera.read_timeout_s must be positive")
    if c.pixel_format not in {"bgr", "i420"}:
        raise ConfigError(f"camera.pixel_format must be bgr or i420, not {c.pixel_format!r}")
    if c.pixel_format == "i420" and c.backend not in {"synthetic", "picamera2", "mock"}:
        raise ConfigError(
            'camera.pixel_format = "i420" needs a camera that delivers YUV420: the synthetic '
            f"camera or picamera2 (or its mock), not {c.backend}"
        )
    sc = cfg.scanner
    if sc.decode_every < 1:
        raise ConfigError("scanner.decode_every must be at least 1")
    if sc.full_decode_every_s <= 0:
        raise ConfigError("scanner.full_decode_every_s must be positive")
    if not 1 <= sc.confirm_looks <= 10:
        raise ConfigError("scanner.confirm_looks must be between 1 and 10")
    if sc.keyboard not in KEYBOARDS:
        raise ConfigError(
            f"scanner.keyboard must be {', '.join(KEYBOARDS[:-1])} or {KEYBOARDS[-1]},"
            f" not {sc.keyboard!r}"
        )
    if sc.pedal_gpio < -1 or sc.pedal_gpio > 40:
        raise ConfigError("scanner.pedal_gpio must be a BCM pin number 0-40, or -1 for none")
    k = cfg.codes
    for i, p in enumerate(k.order_patterns):
        _check_regex(p, f"codes.order_patterns[{i}]")
    for name in k.order_symbologies:
        if name not in CAMERA_SYMBOLOGIES:
            raise ConfigError(
                f"codes.order_symbologies: unknown symbology {name!r}"
                f" (allowed: {', '.join(CAMERA_SYMBOLOGIES)})"
            )
    for name, p in k.waybill_patterns.items():
        _check_regex(p, f"codes.waybill_patterns.{name}")
    for code, cmd in k.control_codes.items():
        if cmd not in {"seal", "test", "signout", "return"}:
            raise ConfigError(
                f"codes.control_codes.{code}: command must be seal, test, signout or return"
            )
    for field_name in ("operator_patterns", "return_patterns"):
        for i, p in enumerate(getattr(k, field_name)):
            _check_regex(p, f"codes.{field_name}[{i}]")
    if k.debounce_s < 0:
        raise ConfigError("codes.debounce_s must not be negative")
    if not 4 <= k.max_length <= 512:
        raise ConfigError("codes.max_length must be between 4 and 512")
    se = cfg.session
    if not 0 <= se.pre_roll_s <= 30:
        raise ConfigError("session.pre_roll_s must be between 0 and 30 seconds")
    if se.max_duration_s <= 0:
        raise ConfigError("session.max_duration_s must be positive")
    if se.still_timeout_s < 0:
        raise ConfigError("session.still_timeout_s must not be negative (0 = off)")
    r = cfg.recorder
    if r.overlay_language not in {"en", "zh", "zh+en"}:
        raise ConfigError(
            f"recorder.overlay_language must be en, zh or zh+en, not {r.overlay_language!r}"
        )
    if not 0 <= r.crf <= 51:
        raise ConfigError("recorder.crf must be between 0 and 51")
    if r.keyframe_interval_s <= 0 or r.fsync_interval_s <= 0:
        raise ConfigError("recorder intervals must be positive")
    if r.preset not in {
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
    }:  # fmt: skip
        raise ConfigError(f"recorder.preset {r.preset!r} is not a fast libx264 preset")
    if r.encoder not in ENCODERS:
        raise ConfigError(
            f"recorder.encoder must be libx264 (software) or h264_v4l2m2m (a Raspberry Pi 4's"
            f" hardware encoder), not {r.encoder!r}"
        )
    if not 200 <= r.bitrate_kbps <= 25_000:
        raise ConfigError("recorder.bitrate_kbps must be between 200 and 25000")
    if r.encoder == "h264_v4l2m2m":
        problem = hw_size_problem(c.width, c.height)
        if problem:
            raise ConfigError(f"camera size for recorder.encoder = h264_v4l2m2m: {problem}")
    w = cfg.web
    if not 1 <= w.port <= 65535:
        raise ConfigError("web.port must be between 1 and 65535")
    if w.secure_cookies not in {"auto", "always", "never"}:
        raise ConfigError(
            f"web.secure_cookies must be auto, always or never, not {w.secure_cookies!r}"
        )
    if not 0.05 <= w.session_hours <= 24 * 30:
        raise ConfigError("web.session_hours must be between 0.05 and 720")
    if w.idle_minutes < 0:
        raise ConfigError("web.idle_minutes must not be negative (0 = no idle limit)")
    if not 0.01 <= w.share_max_days <= 366:
        raise ConfigError("web.share_max_days must be between 0.01 and 366")
    if w.default_language not in {"en", "zh_CN"}:
        raise ConfigError(f"web.default_language must be en or zh_CN, not {w.default_language!r}")
    if not 1 <= w.threads <= 256:
        raise ConfigError("web.threads must be between 1 and 256")
    if not 1 <= w.live_max_s <= 86400:
        raise ConfigError("web.live_max_s must be between 1 and 86400 seconds")
    if w.stale_after_s <= 0:
        raise ConfigError("web.stale_after_s must be positive")
    if not 1 <= w.verify_max_mb <= w.verify_spool_mb:
        raise ConfigError("web.verify_max_mb must be between 1 and web.verify_spool_mb")
    if w.verify_headroom_mb < 0 or w.verify_unzipped_mb < 1 or w.verify_max_members < 1:
        raise ConfigError(
            "web.verify_headroom_mb must not be negative; verify_unzipped_mb and "
            "verify_max_members must be positive"
        )
    if w.bundle_cache_mb < 1:
        raise ConfigError("web.bundle_cache_mb must be positive")
    if not 1 <= w.verify_parallel <= 64 or w.verify_per_hour < 1:
        raise ConfigError("web.verify_parallel must be 1..64 and web.verify_per_hour positive")
    pr = cfg.proof
    for i, url in enumerate(pr.tsa_urls):
        if not re.match(r"^https?://[^\s/]+", url):
            raise ConfigError(f"proof.tsa_urls[{i}]: expected an http(s) URL, got {url!r}")
    if pr.tsa_timeout_s <= 0 or pr.tsa_retry_s <= 0:
        raise ConfigError("proof.tsa_timeout_s and proof.tsa_retry_s must be positive")
    if not 1 <= pr.checkpoint_every <= 100_000:
        raise ConfigError("proof.checkpoint_every must be between 1 and 100000")
    if not 0.1 <= pr.checkpoint_interval_min <= 1440:
        raise ConfigError("proof.checkpoint_interval_min must be between 0.1 and 1440 minutes")
    _validate_archive(cfg.archive)
    _validate_central(cfg.central)
    _validate_retention(cfg.retention)
    _validate_alerts(cfg.alerts)
    _validate_feedback(cfg.feedback)
    _validate_webhooks(cfg.webhooks)
    _validate_lookup(cfg.lookup)
    if cfg.screen.token and (len(cfg.screen.token) < 16 or not cfg.screen.token.isprintable()):
        raise ConfigError("screen.token must be at least 16 printable characters")
    for name in cfg.screen.packers:
        if not name.strip() or len(name) > 64 or not name.isprintable() or name != name.strip():
            raise ConfigError(f"screen.packers: {name!r} is not a name (1-64 printable characters)")
    if len(set(cfg.screen.packers)) != len(cfg.screen.packers):
        raise ConfigError("screen.packers lists a name twice")


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _validate_archive(a: ArchiveSection) -> None:
    if a.enabled and not _BUCKET.match(a.bucket):
        raise ConfigError(
            f"archive.bucket must be a valid S3 bucket name (3-63 of a-z 0-9 . -), not {a.bucket!r}"
        )
    if a.endpoint_url and not re.match(r"^https?://[^\s/]+", a.endpoint_url):
        raise ConfigError(f"archive.endpoint_url must be an http(s) URL, not {a.endpoint_url!r}")
    if a.addressing_style not in {"auto", "path", "virtual"}:
        raise ConfigError("archive.addressing_style must be auto, path or virtual")
    if a.object_lock_mode not in {"", "GOVERNANCE", "COMPLIANCE"}:
        raise ConfigError('archive.object_lock_mode must be "", GOVERNANCE or COMPLIANCE')
    if a.object_lock_days < 0 or (a.object_lock_mode and a.object_lock_days == 0):
        raise ConfigError("archive.object_lock_days must be positive when a lock mode is set")
    if a.max_bytes_per_s < 0:
        raise ConfigError("archive.max_bytes_per_s must not be negative (0 = unlimited)")
    if not 5 <= a.part_size_mb <= 5120:
        raise ConfigError("archive.part_size_mb must be between 5 and 5120 (S3 limits)")
    if a.checksum not in {"sha256", "md5"}:
        raise ConfigError("archive.checksum must be sha256 or md5")
    if a.scan_interval_s <= 0 or a.retry_s <= 0 or a.timeout_s <= 0:
        raise ConfigError("archive.scan_interval_s, retry_s and timeout_s must be positive")
    if a.stream not in {"proxy", "redirect"}:
        raise ConfigError("archive.stream must be proxy or redirect")
    if not 10 <= a.presign_s <= 7 * 86400:
        raise ConfigError("archive.presign_s must be between 10 and 604800 seconds")
    if "\\" in a.prefix or a.prefix.startswith("/") or ".." in a.prefix.split("/"):
        raise ConfigError(f"archive.prefix {a.prefix!r} must be a relative key prefix")


def _validate_central(c: CentralSection) -> None:
    if c.enabled and not re.match(r"^https?://[^\s/]+", c.url):
        raise ConfigError(f"central.url must be an http(s) URL when enabled, not {c.url!r}")
    if c.enabled and not (c.token or c.token_file):
        raise ConfigError("central.token or central.token_file is needed when enabled")
    if c.interval_s <= 0 or c.timeout_s <= 0:
        raise ConfigError("central.interval_s and central.timeout_s must be positive")
    if not 1 <= c.batch <= 5000:
        raise ConfigError("central.batch must be between 1 and 5000")
    if not 0 < c.duplicate_timeout_s <= 10:
        raise ConfigError("central.duplicate_timeout_s must be between 0 and 10 seconds")


def _validate_alerts(a: AlertsSection) -> None:
    if a.webhook_url and not re.match(r"^https?://[^\s/]+", a.webhook_url):
        raise ConfigError(f"alerts.webhook_url must be an http(s) URL, not {a.webhook_url!r}")
    if a.webhook_url and not (a.webhook_secret or a.webhook_secret_file):
        raise ConfigError("alerts.webhook_secret or webhook_secret_file is needed (signatures)")
    if a.smtp_host and not (a.mail_from and a.mail_to):
        raise ConfigError("alerts.mail_from and alerts.mail_to are needed with smtp_host")
    if not 0 < a.smtp_port < 65536:
        raise ConfigError("alerts.smtp_port must be a TCP port")
    if a.repeat_hours < 0 or a.silent_after_s <= 0 or a.backlog_clips < 1 or a.disk_free_mb < 0:
        raise ConfigError(
            "alerts: repeat_hours >= 0, silent_after_s > 0, backlog_clips >= 1, disk_free_mb >= 0"
        )


def _validate_retention(r: RetentionSection) -> None:
    if not 0 <= r.min_age_days <= 36500:
        raise ConfigError("retention.min_age_days must be between 0 and 36500")
    if not r.min_age_days_return <= 36500:
        raise ConfigError("retention.min_age_days_return must be at most 36500 (negative: same)")
    if r.free_floor_mb < 0:
        raise ConfigError("retention.free_floor_mb must not be negative (0 = off)")
    if not 0 <= r.free_floor_percent < 100:
        raise ConfigError("retention.free_floor_percent must be between 0 and 100 (0 = off)")
    if not 1 <= r.check_every_s <= 3600:
        raise ConfigError("retention.check_every_s must be between 1 and 3600 seconds")
    if r.alarm_command:
        try:
            if not shlex.split(r.alarm_command):
                raise ValueError("empty command")
        except ValueError as exc:
            raise ConfigError(f"retention.alarm_command: cannot parse it: {exc}") from exc


def _validate_feedback(f: FeedbackSection) -> None:
    if f.output not in {"none", "alsa", "log"}:
        raise ConfigError(f"feedback.output must be none, alsa or log, not {f.output!r}")
    if not f.device or any(c.isspace() or ord(c) < 32 for c in f.device):
        raise ConfigError(f"feedback.device must be an ALSA device name, not {f.device!r}")
    if not f.player.strip():
        raise ConfigError("feedback.player must name the ALSA player (aplay)")
    if not 0 < f.volume <= 1:
        raise ConfigError("feedback.volume must be above 0 and at most 1")
    if f.voice not in {"none", "en", "zh"}:
        raise ConfigError(f"feedback.voice must be none, en or zh, not {f.voice!r}")


def _validate_webhooks(w: WebhooksSection) -> None:
    for url in w.urls:
        if not re.match(r"^https?://[^\s/]+[^\s]*$", url):
            raise ConfigError(f"webhooks.urls: not an http(s) URL: {url!r}")
    if w.urls and not (w.secret or w.secret_file):
        raise ConfigError("webhooks.secret or webhooks.secret_file is needed when urls are set")
    if w.secret and len(w.secret) < 16:
        raise ConfigError("webhooks.secret must be at least 16 characters")
    bad = sorted(set(w.events) - set(WEBHOOK_EVENTS))
    if bad:
        raise ConfigError(
            f"webhooks.events: unknown {', '.join(bad)} (known: {', '.join(WEBHOOK_EVENTS)})"
        )
    if not 0.5 <= w.timeout_s <= 60:
        raise ConfigError("webhooks.timeout_s must be between 0.5 and 60")
    if w.retry_s <= 0 or w.max_backoff_s < w.retry_s:
        raise ConfigError("webhooks.retry_s must be positive and max_backoff_s at least retry_s")
    if not 1 <= w.max_attempts <= 1000:
        raise ConfigError("webhooks.max_attempts must be between 1 and 1000")


def _validate_lookup(lk: LookupSection) -> None:
    if lk.url_template:
        if not re.match(r"^https?://[^\s/]+[^\s]*$", lk.url_template):
            raise ConfigError(f"lookup.url_template must be an http(s) URL: {lk.url_template!r}")
        if "{order}" not in lk.url_template:
            raise ConfigError("lookup.url_template must contain {order}")
    for name, value in lk.headers.items():
        if not re.match(r"^[A-Za-z0-9-]+$", name) or any(c in value for c in "\r\n"):
            raise ConfigError(f"lookup.headers: bad header {name!r}")
    if not 0.1 <= lk.timeout_s <= 30:
        raise ConfigError("lookup.timeout_s must be between 0.1 and 30")


def from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a Config from parsed TOML."""
    cfg: Config = _build(Config, data, "")
    validate(cfg)
    return cfg


def load_cli(path: Path | str | None, data_dir: Path | str | None) -> Config:
    """What every command does with ``--config FILE`` and ``--data DIR`` (which wins)."""
    cfg = load(path)
    return cfg.with_data_dir(Path(data_dir)) if data_dir else cfg


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; a missing, unreadable or invalid file is a
    ConfigError naming ``what`` it is (a config file, a scenario file)."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def load(path: Path | str | None) -> Config:
    """Load and validate a TOML config file; ``None`` gives the built-in defaults."""
    if path is None:
        return from_dict({})
    p = Path(path)
    data = read_toml(p, "config file")
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


__all__ = ["Config", "ConfigError", "from_dict", "load", "validate"]
