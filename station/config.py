"""One frozen, typed config declared once: its schema drives loading, validation and the docs."""

from __future__ import annotations

import dataclasses
import re
import shlex
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from station.capture.cards import Card, card_conflicts
from station.errors import ConfigError
from station.recording.h264_limits import hw_size_problem

T = TypeVar("T")

# ---- the schema's vocabulary --------------------------------------------------------------
# Each key is a dataclass field declared with setting(): its type and default are the field's,
# and Setting holds the rest. From that one declaration come loading (_build: unknown keys and
# wrong types), validation (check_settings: choices and ranges; validate() adds the checks
# that span keys), `packcam check-config`, config/packcam.example.toml and docs/configuration.md
# (station/configdoc.py renders both; tests/test_config_docs.py fails when they drift).


@dataclass(frozen=True)
class Setting:
    """What the schema says about one key besides its type and default."""

    help: str = ""  # one explanation: the example file's comment and the docs table's text
    choices: tuple[str, ...] = ()  # the value (or each item of a list or table) is one of these
    notes: Mapping[str, str] = field(default_factory=dict)  # choice -> a few words on it
    item: str = "value"  # what one item of a list is called in an error ("symbology")
    ge: float | None = None  # inclusive bounds of a number
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    secret: bool = False  # masked by `check-config --show`

    def allowed(self) -> str:
        """The choices or range in words ("" when any value of the type will do)."""
        if self.choices:
            return _one_of(self.choices, self.notes)
        return _range_words(self)


@dataclass(frozen=True)
class SectionInfo:
    """What the schema says about one [section]: its introduction in the example and docs."""

    help: str


SCHEMA_KEY = "packcam"


def setting(default: T, help: str = "", **rules: Any) -> T:
    """A config key: its default, its explanation and its rules (see Setting)."""
    meta = {SCHEMA_KEY: Setting(help, **rules)}
    if isinstance(default, dict):
        table = dict(default)
        return cast(T, field(default_factory=lambda: dict(table), metadata=meta))
    return field(default=default, metadata=meta)


def section(cls: type[T], help: str) -> T:
    """A [section] of Config: a table of settings (a dataclass) with its introduction."""
    return field(default_factory=cls, metadata={SCHEMA_KEY: SectionInfo(help)})


def setting_of(f: dataclasses.Field[Any]) -> Setting:
    """The Setting a field was declared with (an empty one for a field without)."""
    found = f.metadata.get(SCHEMA_KEY)
    return found if isinstance(found, Setting) else Setting()


def section_help(f: dataclasses.Field[Any]) -> str:
    found = f.metadata.get(SCHEMA_KEY)
    return found.help if isinstance(found, SectionInfo) else ""


def _fmt(x: float) -> str:
    return f"{x:g}"


def _show_choice(c: str) -> str:
    return c if c else '""'


def _one_of(choices: tuple[str, ...], notes: Mapping[str, str] | None = None) -> str:
    """'a, b or c', each with its note in brackets."""
    shown = [
        f"{_show_choice(c)} ({notes[c]})" if notes and c in notes else _show_choice(c)
        for c in choices
    ]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _range_words(s: Setting) -> str:
    low = (f"at least {_fmt(s.ge)}" if s.ge is not None
           else f"above {_fmt(s.gt)}" if s.gt is not None else "")  # fmt: skip
    high = (f"at most {_fmt(s.le)}" if s.le is not None
            else f"below {_fmt(s.lt)}" if s.lt is not None else "")  # fmt: skip
    if s.ge is not None and s.le is not None:
        return f"between {_fmt(s.ge)} and {_fmt(s.le)}"
    if s.gt == 0 and not high:
        return "positive"
    if s.ge == 0 and not high:
        return "not negative"
    return " and ".join(w for w in (low, high) if w)


def _in_range(value: float, s: Setting) -> bool:
    return not (
        (s.ge is not None and value < s.ge)
        or (s.gt is not None and value <= s.gt)
        or (s.le is not None and value > s.le)
        or (s.lt is not None and value >= s.lt)
    )


def check_settings(obj: Any, where: str) -> None:
    """Raise ConfigError for a value of the dataclass ``obj`` (the section ``where``) outside
    its declared choices or range."""
    for f in dataclasses.fields(obj):
        s = setting_of(f)
        value = getattr(obj, f.name)
        name = f"{where}.{f.name}"
        if s.choices:
            if isinstance(value, str):
                if value not in s.choices:
                    raise ConfigError(f"{name} must be {s.allowed()}, not {value!r}")
            elif isinstance(value, dict):
                for k, v in value.items():
                    if v not in s.choices:
                        raise ConfigError(f"{name}.{k} must be {s.allowed()}, not {v!r}")
            else:
                bad = [v for v in value if v not in s.choices]
                if bad:
                    raise ConfigError(
                        f"{name}: unknown {s.item} {bad[0]!r} (allowed: {', '.join(s.choices)})"
                    )
        elif (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and not _in_range(value, s)
        ):
            raise ConfigError(f"{name} must be {s.allowed()}, not {_fmt(value)}")


# ---- the lists of choices, each defined here once (the modules that act on them import them) --

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
# Frame sources and keyboard scanners: station/backends.py registers a factory for each ("mock":
# the picamera2 / evdev adapters on the mock libraries shipped in station/capture/hardware/).
CAMERA_BACKENDS = ("synthetic", "opencv", "picamera2", "mock")
PIXEL_FORMATS = ("bgr", "i420")
# The encoders a clip may be written with (station.recording.writer). libx264 (software, every
# machine) is the default; h264_v4l2m2m is FFmpeg's wrapper of a V4L2 memory-to-memory encoder, on a
# Raspberry Pi 4 the SoC's bcm2835-codec at /dev/video11 (a Pi 5 has no H.264 encoder in hardware).
ENCODERS = ("libx264", "h264_v4l2m2m")
HARDWARE_ENCODERS = frozenset({"h264_v4l2m2m"})
# The libx264 presets fast enough for live recording.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
# Labels on the overlay (station.recording.overlay.LABELS has one set for each).
OVERLAY_LANGUAGES = ("en", "zh", "zh+en")
# The web site's languages (web.i18n, web.summary).
WEB_LANGUAGES = ("zh_CN", "en")
KEYBOARD_SCANNERS = ("none", "stdin", "evdev", "mock")
# What the camera's decoders report (station/capture/barcodes.py); an ISBN is an "ean13"
# (978/979...).
CAMERA_SYMBOLOGIES = ("code128", "code39", "qrcode", "datamatrix", "ean13", "ean8", "upca", "upce")
# Product codes: a camera read of one is an item, never an order, unless [codes] lists it.
PRODUCT_SYMBOLOGIES = frozenset({"ean13", "ean8", "upca", "upce"})
# What a [codes] control card does (station.capture.codes).
CONTROL_COMMANDS = ("seal", "test", "signout", "return", "repack")
WEBHOOK_EVENTS = (
    "clip.finished",
    "clip.failed",
    "clip.archived",
    "alarm.raised",
    "alarm.cleared",
    "waybill.unlinked",
)
FEEDBACK_OUTPUTS = ("none", "alsa", "log")
FEEDBACK_VOICES = ("none", "en", "zh")


# ---- the sections ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StationSection:
    name: str = setting(
        "station-01",
        'shown in the overlay and file names; any Unicode, e.g. "打包台1" (1-64 characters)',
    )
    data_dir: Path = setting(
        Path("/var/lib/packcam"), "clips/, index.sqlite3, tmp/, live/ (the CLI's --data overrides)"
    )
    timezone: str = setting(
        "",
        'IANA zone for the overlay, file names and the sites\' times, e.g. "Asia/Shanghai"; '
        '"" = the machine\'s ($TZ, else /etc/localtime)',
    )


@dataclass(frozen=True)
class CameraSection:
    backend: str = setting(
        "synthetic", "the frame source", choices=CAMERA_BACKENDS,
        notes={"mock": "picamera2's code on a mock camera"},
    )  # fmt: skip
    source: str = setting(
        "0",
        'opencv: device index ("0"), V4L2 path ("/dev/video0"), RTSP/HTTP URL, or a video file.'
        ' picamera2, mock: the camera number ("0").',
    )
    width: int = setting(1280, "even", ge=16, le=7680)
    height: int = setting(720, "even", ge=16, le=4320)
    fps: float = setting(30.0, "frames per second", ge=1, le=120)
    scenario: str = setting(
        "", 'synthetic only: scenario TOML (see examples/scenario.toml); "" = endless demo'
    )
    read_timeout_s: float = setting(
        5.0, "no frame for this long = camera lost (clip closed, reconnect with backoff)", gt=0
    )
    pixel_format: str = setting(
        "bgr",
        '"i420": planar YUV420 end to end (overlay, encoder, barcodes from the Y plane), no BGR'
        " round trip (synthetic, picamera2)",
        choices=PIXEL_FORMATS,
    )


@dataclass(frozen=True)
class ScannerSection:
    camera_decode: bool = setting(True, "read barcodes from the camera picture")
    decode_every: int = setting(
        3, "decode every Nth frame, in a worker thread (never stalls capture)", ge=1
    )
    decode_changes_only: bool = setting(
        True, "decode only the parts of the picture that changed since the last look"
    )
    full_decode_every_s: float = setting(
        2.0, "... but the whole picture at least this often (kept under codes.debounce_s)", gt=0
    )
    confirm_looks: int = setting(
        2, "a camera read counts once in this many frames (model-based reads: +1)", ge=1, le=10
    )
    keyboard: str = setting(
        "none", "a keyboard-wedge scanner", choices=KEYBOARD_SCANNERS,
        notes={"stdin": "typed into the terminal", "evdev": "a USB scanner",
               "mock": "a mock evdev scanner"},
    )  # fmt: skip
    evdev_device: str = setting("", '/dev/input/by-id/...-event-kbd; "" = auto-detect the scanner')
    evdev_grab: bool = setting(
        True, "grab the scanner so its keystrokes do not reach other programs"
    )
    pedal_gpio: int = setting(
        -1, "BCM pin of a foot pedal / button wired to ground; -1 = none", ge=-1, le=40
    )


@dataclass(frozen=True)
class CodesSection:
    order_patterns: tuple[str, ...] = setting(
        (),
        "Regexes for your order IDs. Empty = any code that is not a seal, control, waybill or"
        " item (a product code, a web address) is an order. When set, they win over the waybill"
        " patterns, and codes matching nothing are ignored (logged).",
    )
    order_symbologies: tuple[str, ...] = setting(
        ("code128", "code39", "qrcode", "datamatrix"),
        "Symbologies the camera takes order IDs (and seal / control cards) from. Camera reads of"
        " product codes (ean13, ean8, upca, upce; an ISBN is an ean13) not listed here are logged"
        " as items and never start or end a clip. Keyboard-wedge scans ignore this list.",
        choices=CAMERA_SYMBOLOGIES,
        item="symbology",
    )
    product_prefixes: tuple[str, ...] = setting(
        ("69", "977", "978", "979"),
        "A code of 13 digits with a valid EAN-13 check digit that starts with one of these GS1"
        " prefixes is a product (an item: logged, never an order or waybill), also when scanned"
        " by hand, unless order_patterns match it; so are its cartons' ITF-14 and GS1-128"
        ' labels, a 12-digit UPC-A whose EAN-13 form ("0" + it) starts with one, an EAN-8'
        " that starts with one or a UPC-E (8 digits) whose UPC-A does, and a book's, a"
        " periodical's or a UPC-A's code with its 2- or 5-digit add-on. 69 = goods"
        " from China, 977 = periodicals (ISSN), 978/979 = books (ISBN), 00 to 13 = US/Canada"
        ' goods (listed one by one: "00", "01", ...). [] = off.',
    )
    check_digits_sent: bool = setting(
        True,
        "false: the hand scanner is set not to send the check digit of EAN-13, UPC-A and"
        " EAN-8 codes (or a UPC-A's number system digit), so a product of product_prefixes"
        " scanned by hand is also an item as 12 digits (EAN-13), 11 (UPC-A) or 7 (EAN-8)."
        " Nothing then tells it from an order ID or a waybill of that length and prefix (a"
        " 12-digit order number, or ZTO waybill, starting 69 is a product): set the scanner to"
        " send check digits instead where you can.",
    )
    waybill_patterns: dict[str, str] = setting(
        DEFAULT_WAYBILL_PATTERNS,
        "Waybill (tracking number) patterns per carrier; a waybill scan is linked to the open"
        " order.",
    )
    seal_codes: tuple[str, ...] = setting(
        ("SEAL", "封箱"), "compared case-insensitively, otherwise exactly"
    )
    control_codes: dict[str, str] = setting(
        {},
        'code -> command: "seal" ends the clip like the pedal; "test" is only logged (scanner'
        ' check); "signout" signs the packer out; "return" makes the next clip a return;'
        ' "repack": the next order sheet the camera reads within session.repack_window_s opens'
        " its clip, also of an order packed at this table before (a repack, for a station"
        " with no hand scanner).",
        choices=CONTROL_COMMANDS,
    )
    operator_patterns: tuple[str, ...] = setting(
        ("^OP[:-]",),
        "Packer badges: a code matching one of these signs in the packer named by the rest of it"
        ' ("OP:alice" -> alice). A badge never starts or ends a clip; the open clip keeps its'
        " packer.",
    )
    signout_codes: tuple[str, ...] = setting(("SIGNOUT", "签退"), "sign the current packer out")
    return_codes: tuple[str, ...] = setting(
        ("RETURN", "退货"),
        "Returns: this card, or a waybill matching return_patterns, makes the next clip a return"
        ' (unboxing a returned parcel): kind "return" in the overlay, manifest, index and search.',
    )
    return_patterns: tuple[str, ...] = setting(
        (), "e.g. ['^RT\\d{10}$'] for the carrier's return labels"
    )
    debounce_s: float = setting(
        3.0, "a code seen again within this many seconds of its last sighting is one scan", ge=0
    )
    max_length: int = setting(64, "longer input is rejected", ge=4, le=512)


@dataclass(frozen=True)
class SessionSection:
    pre_roll_s: float = setting(
        3.0, "seconds before the order scan included in the clip", ge=0, le=30
    )
    max_duration_s: float = setting(
        600.0,
        'safety time limit ("timeout") of an order, from the start of its first clip: a clip'
        " resumed after a camera loss does not restart it",
        gt=0,
    )
    still_timeout_s: float = setting(
        0.0, 'end the clip after this many seconds without motion ("still"); 0 = off', ge=0
    )
    waybill_ends_clip: bool = setting(
        False,
        'true: the waybill scan is the seal ("waybill"); within 1 s of the order scan that'
        " opened the clip it is the parcel before's (or scanned early): it ends and links nothing",
    )
    require_packer: bool = setting(
        False, "true: an order scan is refused (refusal sound) while no packer is signed in"
    )
    repack_window_s: float = setting(
        10.0,
        'after a "repack" control card is shown (held up, not lying in view), the first order'
        " sheet the camera reads within this many seconds, with no clip open, opens its clip"
        " even if the order was packed at this table before",
        gt=0,
        le=60,
    )


@dataclass(frozen=True)
class RecorderSection:
    preset: str = setting("ultrafast", "libx264 preset", choices=X264_PRESETS)
    crf: int = setting(23, "libx264 quality (lower = better, bigger)", ge=0, le=51)
    keyframe_interval_s: float = setting(4.0, "seek granularity in the browser", gt=0)
    fsync_interval_s: float = setting(1.0, "at most this much video is lost on a power cut", gt=0)
    overlay: bool = setting(
        True, "burn time, order, waybill, station and elapsed time into the picture"
    )
    font: str = setting("", 'TTF/OTF/TTC with Chinese glyphs; "" = search the system fonts')
    overlay_language: str = setting(
        "en", "overlay labels", choices=OVERLAY_LANGUAGES,
        notes={"en": "Order/Waybill", "zh": "订单/运单"},
    )  # fmt: skip
    encoder: str = setting(
        "libx264",
        "the H.264 encoder, tried at start-up and never swapped: the station refuses to start"
        " if it is missing. A Pi 5 has no hardware encoder: keep libx264 there. With"
        " h264_v4l2m2m, camera.width must be a multiple of 32 and the size at most 1920x1080"
        " (check-config refuses others); the H.264 level and key-frame period are set for you.",
        choices=ENCODERS,
        notes={
            "libx264": "software, any machine; preset + crf",
            "h264_v4l2m2m": "a Raspberry Pi 4's hardware encoder at /dev/video11",
        },
    )
    bitrate_kbps: int = setting(
        4000, "h264_v4l2m2m only (it has no crf): ~30 MB per minute at any size", ge=200, le=25_000
    )


@dataclass(frozen=True)
class WebSection:
    host: str = setting("127.0.0.1", "use 0.0.0.0 to serve the whole LAN")
    port: int = setting(8080, "the TCP port of the web site", ge=1, le=65535)
    secret_key_file: str = setting(
        "", 'Flask secret (sessions, CSRF, share links); "" = <data>/web-secret, made once (0600)'
    )
    secure_cookies: str = setting(
        "auto", "the Secure flag on cookies", choices=("auto", "always", "never"),
        notes={"auto": "when the request came over HTTPS"},
    )  # fmt: skip
    trust_proxy: bool = setting(
        False, "behind one reverse proxy (nginx, caddy) that sets X-Forwarded-For/-Proto/-Host"
    )
    session_hours: float = setting(
        12.0, "a login lasts this long, then the user logs in again", ge=0.05, le=720
    )
    idle_minutes: float = setting(
        60.0, "... and ends after this long without a request (a PC left logged in); 0 = never",
        ge=0,
    )  # fmt: skip
    share_max_days: float = setting(
        30.0, "longest lifetime a share link may be given", ge=0.01, le=366
    )
    default_language: str = setting(
        "en", "when the browser asks for neither", choices=WEB_LANGUAGES
    )
    threads: int = setting(
        16, "waitress worker threads (each open video or live stream holds one)", ge=1, le=256
    )
    live_max_s: float = setting(
        600.0, "a live MJPEG stream ends after this many seconds", ge=1, le=86400
    )
    stale_after_s: float = setting(30.0, 'a station silent this long "stopped reporting"', gt=0)
    verify_max_mb: int = setting(
        1024,
        "largest clip or bundle the public /verify page accepts (at most verify_spool_mb)."
        " /verify spools uploads under <data>/spool/verify and refuses (507) rather than leave"
        " less than the retention floor + verify_headroom_mb free on the data disk.",
        ge=1,
    )
    verify_spool_mb: int = setting(
        2048, "most /verify may hold on the data disk at once (uploads + unzipped)", ge=1
    )
    verify_headroom_mb: int = setting(
        512, "kept free above the station's retention floor, always", ge=0
    )
    verify_unzipped_mb: int = setting(2048, "most a bundle's clips may unpack to", ge=1)
    verify_max_members: int = setting(500, "most files a bundle may hold", ge=1)
    verify_parallel: int = setting(2, "uploads received or checked at once", ge=1, le=64)
    verify_per_hour: int = setting(30, "uploads per remote address (IPv6: per /64) per hour", ge=1)
    verify_min_kbps: int = setting(
        4,
        "an upload slower than this on average after its first 30 s is cut off (408): a"
        " trickle would hold one of the verify_parallel places",
        ge=1,
    )
    bundle_cache_mb: int = setting(
        2048, "evidence bundles kept for resumed downloads (<data>/exports)", ge=1
    )
    frame_cache_mb: int = setting(
        256,
        "key frames and thumbnails kept for the pages (<data>/cache/frames, ~90 KB a clip)",
        ge=1,
        le=65536,
    )


@dataclass(frozen=True)
class ProofSection:
    """Signed manifests, the Merkle log, RFC 3161 timestamps and C2PA (station/proof/)."""

    enabled: bool = setting(True, "sign every manifest and append it to the station's Merkle log")
    key_path: str = setting(
        "",
        '"" = <data>/proof/station-key.pem: the Ed25519 station key, created on first run (0600)',
    )
    key_cert_path: str = setting(
        "", 'the company CA\'s certificate for that key ("" = <data>/proof-public/station-key.crt)'
    )
    c2pa_cert_path: str = setting(
        "", "ES256 station certificate chain (leaf first) for C2PA"
        ' ("" = <data>/proof-public/station-c2pa-chain.pem)',
    )  # fmt: skip
    c2pa_key_path: str = setting("", 'its private key ("" = <data>/proof/station-c2pa-key.pem)')
    ca_cert_path: str = setting(
        "", "the company root CA certificate (trust anchor for verifying;"
        ' "" = <data>/proof-public/company-ca.crt)',
    )  # fmt: skip
    c2pa: bool = setting(
        False, "embed a C2PA manifest in each clip (needs c2pa-python and `packcam ca issue`)"
    )
    tsa_urls: tuple[str, ...] = setting(
        (), "RFC 3161 timestamp authorities (http/https), tried in order (可信时间戳)"
    )
    tsa_ca_path: str = setting("", "PEM roots that timestamp tokens must chain to")
    tsa_timeout_s: float = setting(10.0, "timeout of one request to a TSA", gt=0)
    tsa_retry_s: float = setting(
        60.0, "first retry delay when a TSA is unreachable (then doubling)", gt=0
    )
    checkpoint_every: int = setting(
        1,
        "sign a log checkpoint after this many clips (1: every clip is covered at once, so its"
        " evidence bundle can be exported right after recording)",
        ge=1,
        le=100_000,
    )
    checkpoint_interval_min: float = setting(
        10.0,
        "...and at least this often, idle or not, each one timestamped: a log rolled back later"
        " contradicts a checkpoint a TSA (or the central witness) already saw",
        ge=0.1,
        le=1440,
    )


@dataclass(frozen=True)
class ArchiveSection:
    """Upload finished clips and their proofs to S3-compatible object storage
    (station/fleet/archiver)."""

    enabled: bool = setting(False, "upload clips and proofs to the bucket")
    endpoint_url: str = setting(
        "", '"" = AWS S3; e.g. http://minio.lan:9000, https://oss-cn-hangzhou.aliyuncs.com'
    )
    region: str = setting("us-east-1", 'Garage: "garage"; OSS: e.g. "oss-cn-hangzhou"')
    bucket: str = setting(
        "", 'e.g. "packcam-archive" (create it first, with Object Lock if wanted)'
    )
    prefix: str = setting("packcam/", "every object key starts with this")
    access_key_id: str = setting(
        "", '"" = AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / ~/.aws / instance role'
    )
    secret_access_key: str = setting("", "the secret of access_key_id", secret=True)
    addressing_style: str = setting(
        "auto", "URL style", choices=("auto", "path", "virtual"),
        notes={"path": "MinIO, SeaweedFS, Garage", "virtual": "Aliyun OSS"},
    )  # fmt: skip
    object_lock_mode: str = setting(
        "", "WORM; needs a bucket with Object Lock", choices=("", "GOVERNANCE", "COMPLIANCE")
    )
    object_lock_days: int = setting(
        0, "keep each object locked this many days (with a mode), e.g. 180", ge=0
    )
    max_bytes_per_s: int = setting(
        0, "upload bandwidth cap in bytes/s (token bucket); 0 = unlimited", ge=0
    )
    part_size_mb: int = setting(
        8, "part size of multipart uploads (grows to stay under 10 000 parts)", ge=5, le=5120
    )
    checksum: str = setting(
        "sha256", "integrity check of each upload", choices=("sha256", "md5"),
        notes={"sha256": "x-amz-checksum-sha256", "md5": "Content-MD5, for older stores"},
    )  # fmt: skip
    verify_download: bool = setting(
        False, "also read each object back and hash it (doubles the traffic)"
    )
    keyframes: bool = setting(
        True, "upload JPEG key frames (start, each scan, end) beside each clip"
    )
    scan_interval_s: float = setting(
        60.0, "look for clips not yet archived this often (and at start-up)", gt=0
    )
    retry_s: float = setting(
        10.0, "first retry delay after a failure (then doubling, at most 15 min)", gt=0
    )
    timeout_s: float = setting(30.0, "connect/read timeout of one request", gt=0)
    stream: str = setting(
        "proxy", "how the central site serves clips", choices=("proxy", "redirect"),
        notes={"proxy": "Range passed through; each clip checked against its signed size, "
                        "a whole download also against its SHA-256",
               "redirect": "to a presigned URL: the browser reads the store, nothing is "
                           "checked"},
    )  # fmt: skip
    presign_s: int = setting(
        300, "lifetime of a presigned URL in redirect mode", ge=10, le=7 * 86400
    )


@dataclass(frozen=True)
class CentralSection:
    """The central index: stations register clips with it; ``packcam web --central`` serves it."""

    enabled: bool = setting(False, "station: register clips, checkpoints and health")
    url: str = setting("", "the central site, e.g. https://packcam.example.com/")
    token: str = setting(
        "", "from `packcam central add-station NAME` on the central server", secret=True
    )
    token_file: str = setting("", "or read the token from this file (wins over token)")
    interval_s: float = setting(5.0, "push what is new this often (at once after each clip)", gt=0)
    batch: int = setting(200, "clips per request", ge=1, le=5000)
    timeout_s: float = setting(10.0, "timeout of one request", gt=0)
    duplicate_check: bool = setting(
        True, "an order recorded at another station is a repack linked to its clips"
    )
    duplicate_timeout_s: float = setting(
        1.5, "wait no longer for that answer (the clip starts at the scan anyway)", gt=0, le=10
    )
    dsn: str = setting(
        "", 'central server: PostgreSQL conninfo; "" = $PACKCAM_CENTRAL_DSN', secret=True
    )


@dataclass(frozen=True)
class RetentionSection:
    """What may be deleted when space runs out, and the disk-space floor
    (station/store/retention.py)."""

    min_age_days: float = setting(
        90.0,
        "platforms' dispute windows; clips younger than this are never deleted",
        ge=0,
        le=36500,
    )
    min_age_days_return: float = setting(
        -1.0, "the same for return (unboxing) clips; negative = min_age_days", le=36500
    )
    free_floor_mb: int = setting(1024, "keep at least this much free (0 = off) ...", ge=0)
    free_floor_percent: float = setting(
        0.0, "... or this share of the disk, whichever is larger (0 = off)", ge=0, lt=100
    )
    check_every_s: float = setting(
        30.0, "free-space check interval (and after every clip)", ge=1, le=3600
    )
    archive_required: bool = setting(
        True,
        "with [archive] enabled: delete only clips already verified in the store, and only once"
        " a HEAD finds their object still there (false: also clips not archived yet). Without"
        " archiving there is nothing to wait for.",
    )
    alarm_command: str = setting(
        "",
        "run on every disk-full / recording alarm with the message as last argument, e.g."
        ' "/usr/local/bin/beep" or "gpioset gpiochip0 17=1"',
    )


@dataclass(frozen=True)
class AlertsSection:
    """Central site: fleet alerts (`packcam central alerts`), de-duplicated, by webhook and mail."""

    webhook_url: str = setting(
        "", 'POST {"events": [...]}, signed like [webhooks] (docs/integration.md)'
    )
    webhook_secret: str = setting("", "HMAC key of the alert webhook", secret=True)
    webhook_secret_file: str = setting("", "or read the secret from this file (wins)")
    smtp_host: str = setting("", '"" = no e-mail')
    smtp_port: int = setting(587, "the mail server's port", ge=1, le=65535)
    smtp_starttls: bool = setting(True, "upgrade the SMTP connection with STARTTLS")
    smtp_user: str = setting("", 'SMTP login; "" = none')
    smtp_password_file: str = setting("", "a file holding the SMTP password")
    mail_from: str = setting("", "the sender address of alert mail")
    mail_to: tuple[str, ...] = setting((), 'e.g. ["ops@example.com"]')
    repeat_hours: float = setting(
        24.0, "remind of a condition still true this often (0 = never)", ge=0
    )
    silent_after_s: float = setting(300.0, 'a station not heard from this long is "silent"', gt=0)
    backlog_clips: int = setting(200, "alert when this many clips wait to be archived", ge=1)
    disk_free_mb: int = setting(2048, "alert when a station has less free space than this", ge=0)


@dataclass(frozen=True)
class FeedbackSection:
    """Sounds at the station on each scan, seal and alarm (station/floor/feedback.py)."""

    output: str = setting(
        "none", "where the sounds go", choices=FEEDBACK_OUTPUTS,
        notes={"alsa": "a speaker: 3.5 mm, HDMI or USB", "log": "<data>/sounds.log"},
    )  # fmt: skip
    device: str = setting(
        "default", 'ALSA device (`aplay -L`): "default", "plughw:CARD=Headphones", "hdmi:0"'
    )
    player: str = setting("aplay", "from alsa-utils")
    volume: float = setting(0.5, "of full scale", gt=0, le=1)
    voice: str = setting(
        "none", "a spoken prompt after the tone (rendered once by espeak-ng)",
        choices=FEEDBACK_VOICES,
    )  # fmt: skip
    sounds_dir: str = setting(
        "", '"" = <data_dir>/sounds; pre-rendered prompt-<voice>-<name>.wav are used as is'
    )


@dataclass(frozen=True)
class LookupSection:
    """Fetch each order's items from the seller's system as its clip starts
    (station/floor/lookup.py)."""

    url_template: str = setting(
        "",
        'GET on each order scan, "{order}" replaced by the URL-quoted order ID, e.g.'
        ' "https://erp.example.com/api/orders/{order}/items"; "" = off',
    )
    headers: dict[str, str] = setting(
        {}, 'sent with each lookup, e.g. Authorization = "Bearer ..."', secret=True
    )
    timeout_s: float = setting(2.0, "the scan never waits longer for the answer", ge=0.1, le=30)


@dataclass(frozen=True)
class ScreenSection:
    """The full-screen station page (/screen) on the station's HDMI display (web/screen.py)."""

    allow_localhost: bool = setting(
        True, "the kiosk browser on the station itself needs no login (never via a proxy)"
    )
    token: str = setting(
        "", "16+ characters: /screen/<station>?token=... from another machine", secret=True
    )
    packers: tuple[str, ...] = setting(
        (),
        'names a packer may pick on the screen to sign in (no PIN), e.g. ["王芳", "alice"];'
        " none = badges only",
    )


@dataclass(frozen=True)
class WebhooksSection:
    """Signed POSTs to the seller's systems from a durable queue (station/floor/webhooks.py)."""

    urls: tuple[str, ...] = setting(
        (), 'e.g. ["https://erp.example.com/hooks/packcam"]; none = off'
    )
    secret: str = setting("", "16+ characters, shared with the receiver ...", secret=True)
    secret_file: str = setting("", "... or a file holding it (wins)")
    events: tuple[str, ...] = setting(
        ("clip.finished", "clip.archived", "alarm.raised", "alarm.cleared"),
        "the events sent",
        choices=WEBHOOK_EVENTS,
        item="event",
    )
    timeout_s: float = setting(5.0, "timeout of one delivery", ge=0.5, le=60)
    retry_s: float = setting(10.0, "first retry after this, doubling ...", gt=0)
    max_backoff_s: float = setting(3600.0, "... up to this (at least retry_s)")
    max_attempts: int = setting(
        30, "then the delivery is marked failed (the admin page lists it)", ge=1, le=1000
    )


@dataclass(frozen=True)
class Config:
    station: StationSection = section(StationSection, "")
    camera: CameraSection = section(CameraSection, "")
    scanner: ScannerSection = section(ScannerSection, "")
    codes: CodesSection = section(CodesSection, "")
    session: SessionSection = section(SessionSection, "")
    recorder: RecorderSection = section(RecorderSection, "")
    web: WebSection = section(WebSection, "")
    proof: ProofSection = section(
        ProofSection,
        '"" paths: private keys in <data>/proof/ (0700, the station\'s user only); public files'
        " in <data>/proof-public/ (0644), which the web site reads for /verify and evidence"
        " bundles. See docs/proof.md.",
    )
    archive: ArchiveSection = section(
        ArchiveSection,
        "Upload every finished clip, its signed manifest, log checkpoints, RFC 3161 tokens and"
        " key frames to S3-compatible object storage (MinIO, SeaweedFS, Garage, AWS S3, Aliyun"
        " OSS), in the background, resumably, bandwidth-limited. Only archived clips may be freed"
        " by retention. See docs/fleet.md.",
    )
    central: CentralSection = section(
        CentralSection,
        "Station side: register clips, checkpoints and health with the central server over HTTP."
        " Central side: `packcam web --central --config FILE` searches every station"
        " (PostgreSQL).",
    )
    retention: RetentionSection = section(
        RetentionSection,
        "Clips are deleted only when free space falls below the floor, and only once the web"
        " site's cached key frames and evidence bundles (web.frame_cache_mb, bundle_cache_mb)"
        " are freed: oldest first, never one on legal hold (`packcam hold ORDER`), never one"
        " younger than min_age_days, never one not yet archived when archive_required. When"
        " nothing may be deleted: no new clips, alarm (log, live status, alarm_command); the"
        " clip being recorded is finished at once below half the floor.",
    )
    alerts: AlertsSection = section(
        AlertsSection,
        "Central site: `packcam central alerts` (e.g. every minute from a systemd timer) sends"
        " what changed in the fleet's health: a station silent, an archive backlog, low disk, an"
        " unsynced clock, a station error, and with --bucket-audit deleted/missing/overwritten"
        " clip objects. Each condition is sent when it starts, repeated every repeat_hours while"
        " true, and cleared.",
    )
    feedback: FeedbackSection = section(
        FeedbackSection,
        "A short, distinct sound on each scan: order started (rising), waybill linked (blip),"
        " sealed (three rising notes), refused/unreadable (low buzz), duplicate order, alarm"
        " (siren).",
    )
    webhooks: WebhooksSection = section(
        WebhooksSection,
        "Each event is POSTed as JSON to every URL, signed: header X-Packcam-Signature"
        ' "t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>" (see docs/integration.md).'
        " Deliveries wait in <data>/webhooks.sqlite3 (kept across restarts) and are retried"
        " with back-off.",
    )
    lookup: LookupSection = section(
        LookupSection,
        "On each order scan the station GETs url_template (in the background: recording never"
        ' waits) and expects JSON: a list of items, or {"items": [...]}, each a string or {sku,'
        ' name, qty}. The items go into the clip\'s signed manifest ("order_lookup") and onto'
        " the station screen.",
    )
    screen: ScreenSection = section(
        ScreenSection,
        "The station screen, http://127.0.0.1:8080/screen: the live picture, the order in big"
        " type, elapsed time, state colour, last clip with its hash, alarms, last five orders"
        " (docs/hardware.md).",
    )

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


def station_cards(k: CodesSection) -> list[Card]:
    """The station cards ``[codes]`` configures: seal, sign-out, return, ``control_codes``."""
    return [
        *(Card("seal_codes", c, "seal") for c in k.seal_codes),
        *(Card("signout_codes", c, "signout") for c in k.signout_codes),
        *(Card("return_codes", c, "return") for c in k.return_codes),
        *(Card("control_codes", c, v) for c, v in k.control_codes.items()),
    ]


def _check_regex(pattern: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where}: invalid regular expression {pattern!r}: {exc}") from exc


def validate(cfg: Config) -> None:
    """Raise ConfigError for values that parse but make no sense: each key against its declared
    choices and range, then what one key's rule cannot say (formats, keys that depend on others)."""
    for f in dataclasses.fields(cfg):
        check_settings(getattr(cfg, f.name), f.name)
    s = cfg.station
    if not s.name.strip() or len(s.name) > 64 or any(ord(c) < 32 for c in s.name):
        raise ConfigError("station.name must be 1-64 printable characters")
    if s.timezone:
        try:
            ZoneInfo(s.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"station.timezone: unknown time zone {s.timezone!r}") from exc
    c = cfg.camera
    if c.width % 2 or c.height % 2:
        raise ConfigError(f"camera.width and camera.height must be even, not {c.width}x{c.height}")
    if c.pixel_format == "i420" and c.backend not in {"synthetic", "picamera2", "mock"}:
        raise ConfigError(
            'camera.pixel_format = "i420" needs a camera that delivers YUV420: the synthetic '
            f"camera or picamera2 (or its mock), not {c.backend}"
        )
    k = cfg.codes
    for i, p in enumerate(k.order_patterns):
        _check_regex(p, f"codes.order_patterns[{i}]")
    for name, p in k.waybill_patterns.items():
        _check_regex(p, f"codes.waybill_patterns.{name}")
    for i, prefix in enumerate(k.product_prefixes):
        if not re.fullmatch(r"\d{2,3}", prefix):
            raise ConfigError(
                f"codes.product_prefixes[{i}]: a GS1 prefix is 2 or 3 digits, not {prefix!r}"
            )
    for field_name in ("operator_patterns", "return_patterns"):
        for i, p in enumerate(getattr(k, field_name)):
            _check_regex(p, f"codes.{field_name}[{i}]")
    for clash in card_conflicts(station_cards(k)):
        raise ConfigError(clash)
    if cfg.recorder.encoder == "h264_v4l2m2m":
        problem = hw_size_problem(c.width, c.height)
        if problem:
            raise ConfigError(f"camera size for recorder.encoder = h264_v4l2m2m: {problem}")
    w = cfg.web
    if w.verify_max_mb > w.verify_spool_mb:
        raise ConfigError("web.verify_max_mb must be between 1 and web.verify_spool_mb")
    for i, url in enumerate(cfg.proof.tsa_urls):
        if not re.match(r"^https?://[^\s/]+", url):
            raise ConfigError(f"proof.tsa_urls[{i}]: expected an http(s) URL, got {url!r}")
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
    if a.object_lock_mode and a.object_lock_days == 0:
        raise ConfigError("archive.object_lock_days must be positive when a lock mode is set")
    if "\\" in a.prefix or a.prefix.startswith("/") or ".." in a.prefix.split("/"):
        raise ConfigError(f"archive.prefix {a.prefix!r} must be a relative key prefix")


def _validate_central(c: CentralSection) -> None:
    if c.enabled and not re.match(r"^https?://[^\s/]+", c.url):
        raise ConfigError(f"central.url must be an http(s) URL when enabled, not {c.url!r}")
    if c.enabled and not (c.token or c.token_file):
        raise ConfigError("central.token or central.token_file is needed when enabled")


def _validate_alerts(a: AlertsSection) -> None:
    if a.webhook_url and not re.match(r"^https?://[^\s/]+", a.webhook_url):
        raise ConfigError(f"alerts.webhook_url must be an http(s) URL, not {a.webhook_url!r}")
    if a.webhook_url and not (a.webhook_secret or a.webhook_secret_file):
        raise ConfigError("alerts.webhook_secret or webhook_secret_file is needed (signatures)")
    if a.smtp_host and not (a.mail_from and a.mail_to):
        raise ConfigError("alerts.mail_from and alerts.mail_to are needed with smtp_host")


def _validate_retention(r: RetentionSection) -> None:
    if r.alarm_command:
        try:
            if not shlex.split(r.alarm_command):
                raise ValueError("empty command")
        except ValueError as exc:
            raise ConfigError(f"retention.alarm_command: cannot parse it: {exc}") from exc


def _validate_feedback(f: FeedbackSection) -> None:
    if not f.device or any(c.isspace() or ord(c) < 32 for c in f.device):
        raise ConfigError(f"feedback.device must be an ALSA device name, not {f.device!r}")
    if not f.player.strip():
        raise ConfigError("feedback.player must name the ALSA player (aplay)")


def _validate_webhooks(w: WebhooksSection) -> None:
    for url in w.urls:
        if not re.match(r"^https?://[^\s/]+[^\s]*$", url):
            raise ConfigError(f"webhooks.urls: not an http(s) URL: {url!r}")
    if w.urls and not (w.secret or w.secret_file):
        raise ConfigError("webhooks.secret or webhooks.secret_file is needed when urls are set")
    if w.secret and len(w.secret) < 16:
        raise ConfigError("webhooks.secret must be at least 16 characters")
    if w.max_backoff_s < w.retry_s:
        raise ConfigError("webhooks.max_backoff_s must be at least webhooks.retry_s")


def _validate_lookup(lk: LookupSection) -> None:
    if lk.url_template:
        if not re.match(r"^https?://[^\s/]+[^\s]*$", lk.url_template):
            raise ConfigError(f"lookup.url_template must be an http(s) URL: {lk.url_template!r}")
        if "{order}" not in lk.url_template:
            raise ConfigError("lookup.url_template must contain {order}")
    for name, value in lk.headers.items():
        if not re.match(r"^[A-Za-z0-9-]+$", name) or any(c in value for c in "\r\n"):
            raise ConfigError(f"lookup.headers: bad header {name!r}")


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
