"""Fixtures for the web tests: real H.264 MP4 clips, a real index and accounts in tmp_path."""

from __future__ import annotations

import fractions
import hashlib
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from station import config as config_mod
from station.store.ledger import ClipRecord, Ledger, ScanEventRecord, WaybillLink

TZ8 = timezone(timedelta(hours=8))
FAST_PW = "scrypt:1024:8:1"  # the tests' KDF cost; production uses werkzeug's scrypt default
PASSWORDS = {"admin": "admin-pass-1", "operator": "operator-pass-1", "viewer": "viewer-pass-1"}
OUTSIDE_MARKER = b"OUTSIDE-THE-STORE;"  # content of a file an evil index row points at
CLIP_SECONDS = 4.0
CLIP_FPS = 25
# Order IDs as scanners deliver them, hostile ones included: they are data, never paths.
ORDERS = {
    "plain": "PO-1001",
    "unicode": "订单-七号",
    "slash": "A/B/../C",
    "sql": "x'; DROP TABLE clips; --",
    "pct": "50%_off",
}


def _frame(i: int, w: int = 320, h: int = 240) -> Any:
    import numpy as np

    img = np.full((h, w, 3), 40, np.uint8)
    x = (i * 6) % (w - 40)
    img[100:140, x : x + 40] = (255, 200, 0)
    img[:, :, 2] = (i * 3) % 256
    return img


def make_mp4(path: Path, seconds: float = CLIP_SECONDS, fps: int = CLIP_FPS) -> None:
    """A real H.264 MP4 written by the station's own clip writer (fragmented MP4).

    Falls back to PyAV with the writer's mux options when station.recording.writer is not there.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from station.recording.writer import ClipWriter, EncoderSettings, to_i420
    except ImportError:
        _make_mp4_pyav(path, seconds, fps)
        return
    writer = ClipWriter(path, EncoderSettings(320, 240, fps, keyframe_interval_s=1.0))
    for i in range(round(seconds * fps)):
        writer.write(to_i420(_frame(i)), i / fps)
    writer.finish()


def _make_mp4_pyav(path: Path, seconds: float, fps: int) -> None:
    import av

    w, h = 320, 240
    opts = {"movflags": "frag_every_frame+empty_moov+default_base_moof"}
    with av.open(str(path), "w", format="mp4", options=opts) as out:
        stream = out.add_stream(
            "libx264",
            rate=fps,
            options={"preset": "ultrafast", "tune": "zerolatency", "g": str(fps)},
        )
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(_frame(i, w, h), format="rgb24")
            frame.pts = i
            frame.time_base = fractions.Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def mp4_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mp4") / "template.mp4"
    make_mp4(path)
    return path


@dataclass
class WebEnv:
    """A data dir with indexed clips, the config pointing at it, and helpers."""

    data_dir: Path
    cfg: config_mod.Config
    clips: dict[str, ClipRecord] = field(default_factory=dict)  # by ORDERS key

    def file(self, key: str) -> Path:
        return self.data_dir / self.clips[key].path

    def link_late_waybill(self, waybill: str = "YT8800000001") -> ClipRecord:
        """Link ``waybill`` to PO-1001's second clip (signed without a waybill) after its
        signing, as a late camera read is linked; that clip."""
        clip = self.clips["plain2"]
        assert clip.id is not None
        ledger = Ledger.in_data_dir(self.data_dir)
        try:
            ledger.link_waybill_after_signing(clip.id, "PO-1001", WaybillLink(waybill, "YT", 2.0))
        finally:
            ledger.close()
        return clip


def index_clip(
    ledger: Ledger,
    data_dir: Path,
    src: Path,
    order_id: str,
    *,
    station: str = "桌1",
    start: datetime | None = None,
    rel: str | None = None,
    waybill: str | None = "SF1234567890123",
    copy: bool = True,
    extra: dict[str, Any] | None = None,
) -> ClipRecord:
    """Copy ``src`` into the store and index it as the station would (real size and hash)."""
    start = start or datetime(2026, 11, 30, 9, 0, 0, 123000, tzinfo=TZ8)
    n = len(ledger.clips()) + 1
    rel = rel or f"clips/{start:%Y/%m/%d}/s_{n}.mp4"
    dest = data_dir / rel
    if copy:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    size = dest.stat().st_size if dest.exists() else 1234
    digest = sha256_of(dest) if dest.exists() else "00" * 32
    clip = ClipRecord(
        order_id=order_id,
        station=station,
        started_at=start,
        ended_at=start + timedelta(seconds=CLIP_SECONDS),
        duration_s=CLIP_SECONDS,
        frame_count=round(CLIP_SECONDS * CLIP_FPS),
        finish_reason="sealed",
        pre_roll_s=1.0,
        path=rel,
        manifest_path=rel.replace(".mp4", ".json"),
        size=size,
        sha256=digest,
        waybills=(WaybillLink(waybill, "SF", 2.0),) if waybill else (),
        events=(
            ScanEventRecord("order", order_id, "camera", start + timedelta(seconds=1), 1.0),
            *(
                (ScanEventRecord("waybill", waybill, "camera", start + timedelta(seconds=2), 2.0),)
                if waybill
                else ()
            ),
            ScanEventRecord("seal", "SEAL", "camera", start + timedelta(seconds=3.5), 3.5),
        ),
        extra=dict(extra or {}),
    )
    clip_id = ledger.add_clip(clip)
    got = ledger.clip(clip_id)
    assert got is not None
    return got


def build_env(tmp_path: Path, template: Path, **web: Any) -> WebEnv:
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = config_mod.load(None).with_data_dir(data_dir)
    if web:
        cfg = cfg.replace("web", **web)
    env = WebEnv(data_dir, cfg)
    ledger = Ledger.in_data_dir(data_dir)
    try:
        for i, (key, order_id) in enumerate(ORDERS.items()):
            start = datetime(2026, 11, 30, 9, i, 0, 123000, tzinfo=TZ8)
            env.clips[key] = index_clip(
                ledger,
                data_dir,
                template,
                order_id,
                start=start,
                waybill=f"SF{1234567890120 + i}",
                station="桌1" if i % 2 == 0 else "station-02",
            )
        # A second clip of the plain order (a re-pack), later the same day.
        env.clips["plain2"] = index_clip(
            ledger, data_dir, template, ORDERS["plain"],
            start=datetime(2026, 11, 30, 15, 30, 0, tzinfo=TZ8), waybill=None,
        )  # fmt: skip
        # Rows that must never lead to a file: missing, and pointing outside the store.
        env.clips["missing"] = index_clip(
            ledger, data_dir, template, "GONE-1", rel="clips/2026/11/30/gone.mp4", copy=False
        )
        (data_dir / "outside.mp4").write_bytes(OUTSIDE_MARKER * 64)
        env.clips["outside"] = index_clip(
            ledger, data_dir, template, "EVIL-1", rel="clips/../outside.mp4", copy=False
        )
    finally:
        ledger.close()
    return env


def add_users(data_dir: Path, *, stations: list[str] | None = None) -> None:
    """The three accounts. ``stations``: a central site's, put in one station group with the
    viewer and the operator (web/scope.py: they would see nothing otherwise)."""
    from web.db import WebDB

    db = WebDB.in_data_dir(data_dir, pw_method=FAST_PW)
    try:
        for role, password in PASSWORDS.items():
            db.add_user(role, role, password)
        if stations is not None:
            db.add_group("all-stations")
            db.change_group_stations("all-stations", add=stations)
            db.change_group_members("all-stations", add=["viewer", "operator"])
    finally:
        db.close()


@pytest.fixture(scope="session")
def web_env_template(tmp_path_factory: pytest.TempPathFactory, mp4_template: Path) -> WebEnv:
    """The data dir every ``web_env`` starts from, built once (the index, its clips' files and
    the accounts); tests get a copy, never this one."""
    env = build_env(tmp_path_factory.mktemp("web-env"), mp4_template)
    add_users(env.data_dir)
    return env


@pytest.fixture
def web_env(tmp_path: Path, web_env_template: WebEnv) -> WebEnv:
    """A data dir of its own for the test: a copy of ``web_env_template``'s, at the place
    ``build_env`` puts it, its files written now (copied without their times)."""
    data_dir = tmp_path / "data"
    shutil.copytree(web_env_template.data_dir, data_dir, copy_function=shutil.copy)
    cfg = config_mod.load(None).with_data_dir(data_dir)
    return WebEnv(data_dir, cfg, dict(web_env_template.clips))


def make_app(env: WebEnv, **test_config: Any):
    """The site for ``env``, with a test client that reads and closes every response body
    (as a WSGI server does), so streamed files are closed when the test looks at them."""
    from flask.testing import FlaskClient

    from web import create_app

    class BufferedClient(FlaskClient):
        def open(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("buffered", True)
            return super().open(*args, **kwargs)

    app = create_app(
        env.cfg, test_config={"TESTING": True, "PASSWORD_METHOD": FAST_PW, **test_config}
    )
    app.test_client_class = BufferedClient
    return app


@pytest.fixture
def web_app(web_env: WebEnv):
    return make_app(web_env)


@pytest.fixture
def web_client(web_app):
    return web_app.test_client()


def csrf_of(client: Any) -> str:
    """The CSRF token of the client's session (made by visiting a form page)."""
    client.get("/login")
    with client.session_transaction() as sess:
        return str(sess["csrf"])


def login(client: Any, role: str = "viewer") -> Any:
    token = csrf_of(client)
    resp = client.post(
        "/login",
        data={"username": role, "password": PASSWORDS[role], "csrf_token": token},
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    return client


def session_csrf(client: Any) -> str:
    with client.session_transaction() as sess:
        if "csrf" not in sess:
            sess["csrf"] = "t" * 43
        return str(sess["csrf"])


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def openapi_errors(
    value: Any, schema: dict[str, Any], doc: dict[str, Any], at: str = "$"
) -> list[str]:
    """Where ``value`` (an API answer) breaks ``schema`` from the OpenAPI ``doc``: the subset
    of JSON Schema the document uses, plus every object key the document does not describe
    (so a field the API starts to send cannot go undocumented)."""
    if "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        return openapi_errors(value, node, doc, at)
    errors: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, _JSON_TYPES[n]) and (n == "boolean" or not isinstance(value, bool))
            for n in names
        )
        if not ok:
            return [f"{at}: {value!r} is not {'/'.join(names)}"]
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                errors.append(f"{at}.{key}: not in the OpenAPI document")
            else:
                errors += openapi_errors(item, schema["properties"][key], doc, f"{at}.{key}")
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            errors += openapi_errors(item, schema["additionalProperties"], doc, f"{at}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += openapi_errors(item, schema["items"], doc, f"{at}[{i}]")
    return errors
