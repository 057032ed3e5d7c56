"""Helpers for the proof tests: real fragmented H.264 clips, a recorder run, local RFC 3161 TSAs."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from recorder_support import encoded_recorder

from station import config as config_mod
from station.proof import merkle
from station.proof.ca import _key_usage
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey
from station.proof.log import checkpoint_body, utc_now
from station.proof.trust import Anchors
from station.proof.tsa import request_token
from station.recording.writer import FinishedFile
from station.store.ledger import Ledger, ScanEventRecord

MOVFLAGS = "frag_every_frame+empty_moov+default_base_moof"
W, H, FPS = 160, 96, 10


class SmallWriter:
    """A minimal clip encoder for sample files: libx264 yuv420p in fragmented MP4."""

    def __init__(self, path: Path, fps: int = FPS) -> None:
        self.path = path
        self.fps = fps
        self.container = av.open(str(path), "w", format="mp4", options={"movflags": MOVFLAGS})
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height, self.stream.pix_fmt = W, H, "yuv420p"
        self.stream.time_base = Fraction(1, 90_000)
        self.stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        self.count = 0
        self.first_t: float | None = None
        self.last_t = 0.0

    def write(self, image_i420: np.ndarray, t: float) -> None:
        if self.first_t is None:
            self.first_t = t
        frame = av.VideoFrame.from_ndarray(image_i420, format="yuv420p")
        frame.pts = round((t - self.first_t) * 90_000)
        frame.time_base = Fraction(1, 90_000)
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.count += 1
        self.last_t = t

    def finish(self) -> FinishedFile:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        data = self.path.read_bytes()
        first = self.first_t or 0.0
        return FinishedFile(
            path=self.path,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            frame_count=self.count,
            duration_s=round(self.last_t - first + 1 / self.fps, 3),
            first_t=first,
            last_t=self.last_t,
        )


def frame_i420(i: int) -> np.ndarray:
    """A low-motion test picture: a bar that moves one step per frame."""
    img = np.full((H * 3 // 2, W), 128, np.uint8)
    img[:H, :] = 40
    x = (i * 3) % (W - 16)
    img[20:60, x : x + 16] = 220
    return img


def make_clip(path: Path, frames: int = 20) -> Path:
    w = SmallWriter(path)
    for i in range(frames):
        w.write(frame_i420(i), i / FPS)
    w.finish()
    return path


def record_orders(
    cfg: config_mod.Config,
    finalizers: tuple,
    orders: list[str],
    *,
    frames: int = 12,
    ago: timedelta = timedelta(minutes=30),
    pre_roll: bool = True,
) -> list:
    """Drive the real Recorder, built as the station builds it (encoded pre-roll): one clip
    per order with a scan, a waybill and a seal event.

    With ``pre_roll`` (the default) a clip's bytes depend on thread timing: its scan comes
    two frames in, and the pre-roll ring holds the first keyframe only if the encoder thread
    has already given it back; otherwise an IDR picture is forced at the next frame (and the
    first keyframe still joins the clip when it comes). ``pre_roll=False`` starts each clip
    at an IDR picture made at the frame after its scan (``Recorder.start``): the same frames
    then make the same bytes, at any station and any load."""
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    rec = encoded_recorder(cfg, ledger, W, H, FPS, finalizers=finalizers)
    t = 0.0
    wall0 = datetime.now(UTC).astimezone() - ago
    try:
        for n, order in enumerate(orders):
            for i in range(frames):
                wall = wall0 + timedelta(seconds=t)
                rec.push(frame_i420(n * 100 + i), t, wall)
                if i == 2:
                    rec.start(order, t, wall=wall, pre_roll=pre_roll)
                    rec.log_event(ScanEventRecord("order", order, "camera", wall), t)
                if i == 5:
                    rec.link_waybill(f"SF{1000000000000 + n}", "SF", t)
                    ev = ScanEventRecord("waybill", f"SF{1000000000000 + n}", "camera", wall)
                    rec.log_event(ev, t)
                t += 1 / FPS
            wall = wall0 + timedelta(seconds=t)
            rec.log_event(ScanEventRecord("seal", "SEAL", "camera", wall), t)
            rec.stop("sealed", t)
            t += 5.0
        rec.wait_idle()
    finally:
        rec.close()
        ledger.close()
    return rec.finished


# ---- a local RFC 3161 TSA ------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test TSA"),
        ]
    )


def make_tsa_pki(
    directory: Path, kind: str, cert_valid: timedelta = timedelta(days=30)
) -> tuple[Path, Path, Path]:
    """A root CA and a TSA certificate (critical EKU timeStamping) that expires after
    ``cert_valid``; returns (root, cert, key)."""
    now = datetime.now(UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Test TSA Root {kind}"))
        .issuer_name(_name(f"Test TSA Root {kind}"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    key = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Test TSA {kind}"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + cert_valid)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(_key_usage(sign=True, ca=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / "root.pem").write_bytes(root.public_bytes(pem))
    (directory / "tsa.pem").write_bytes(cert.public_bytes(pem))
    (directory / "tsa.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "root.pem", directory / "tsa.pem", directory / "tsa.key"


TSA_CNF = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5.6
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


class TsaServer:
    """``openssl ts -reply`` behind http.server on 127.0.0.1; ``online = False``: an outage."""

    def __init__(
        self, directory: Path, kind: str, cert_valid: timedelta = timedelta(days=30)
    ) -> None:
        self.dir = directory
        self.kind = kind
        self.root, self.cert, self.key = make_tsa_pki(directory, kind, cert_valid)
        (directory / "serial").write_text("01\n")
        (directory / "tsa.cnf").write_text(TSA_CNF.format(dir=directory))
        self.online = True
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if not server.online:
                    self.send_error(503)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                reply = server.reply(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tsa"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reply(self, query: bytes) -> bytes:
        with self._lock, tempfile.TemporaryDirectory() as tmp:
            q, r = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            q.write_bytes(query)
            cnf = str(self.dir / "tsa.cnf")
            subprocess.run(
                ["openssl", "ts", "-reply", "-config", cnf, "-queryfile", str(q), "-out", str(r)],
                check=True,
                capture_output=True,
                env={**os.environ, "OPENSSL_CONF": cnf},
            )
            self.requests += 1
            return r.read_bytes()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class LateTsa(TsaServer):
    """A TSA that grants its tokens ``late`` after they were asked for (genTime moved, the
    token re-signed with its own key): a TSA the station reached only then, with no clock to
    fake. Its key is EC."""

    def __init__(self, directory: Path, late: timedelta) -> None:
        super().__init__(directory, "ec")
        self.late = late

    def reply(self, query: bytes) -> bytes:
        from asn1crypto import core, tsp

        resp = tsp.TimeStampResp.load(super().reply(query))
        sd = resp["time_stamp_token"]["content"]
        tst = tsp.TSTInfo.load(sd["encap_content_info"]["content"].contents)
        tst["gen_time"] = tst["gen_time"].native + self.late
        tst_der = tst.dump(force=True)
        sd["encap_content_info"]["content"] = core.ParsableOctetString(tst_der)
        si = sd["signer_infos"][0]
        for attr in si["signed_attrs"]:
            if attr["type"].native == "message_digest":
                attr["values"] = [core.OctetString(hashlib.sha256(tst_der).digest())]
        signed = b"\x31" + si["signed_attrs"].dump(force=True)[1:]  # as a SET OF
        key = serialization.load_pem_private_key(self.key.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        si["signature"] = key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return bytes(resp.dump(force=True))


@pytest.fixture(scope="session")
def tsa_rsa(tmp_path_factory: pytest.TempPathFactory):
    srv = TsaServer(tmp_path_factory.mktemp("tsa-rsa"), "rsa")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def tsa_ec(tmp_path_factory: pytest.TempPathFactory):
    srv = TsaServer(tmp_path_factory.mktemp("tsa-ec"), "ec")
    yield srv
    srv.stop()


# ---- a recorded, signed store shared by the proof tests ------------------------------------


@dataclass(frozen=True)
class Store:
    cfg: config_mod.Config
    data: Path
    tsa: TsaServer

    def anchors(self) -> Anchors:
        """What an honest verifier pins: the company CA and the TSA's root, as certificates."""
        ca = x509.load_pem_x509_certificate(
            (self.data / "proof-public/company-ca.crt").read_bytes()
        )
        tsa = x509.load_pem_x509_certificate(self.tsa.root.read_bytes())
        return Anchors(ca=(ca,), tsa=(tsa,))

    def station_key(self) -> StationKey:
        """The station's private key: what its holder re-signs with."""
        return StationKey.load(self.data / "proof/station-key.pem")

    def pins(self) -> list[str]:
        """The same anchors as verifier arguments: ``--ca FILE --tsa-ca FILE``."""
        return [
            "--ca", str(self.data / "proof-public/company-ca.crt"), "--tsa-ca", str(self.tsa.root)
        ]  # fmt: skip

    def copy(self, dest: Path) -> Store:
        import shutil

        shutil.copytree(self.data, dest)
        return Store(self.cfg.with_data_dir(dest), dest, self.tsa)


def build_store(
    root: Path,
    tsa: TsaServer,
    orders: list[str],
    *,
    c2pa: bool = True,
    ca: Any = None,
    certify: bool = True,
    cert_station: str | None = None,
    station: str | None = None,
    ago: timedelta = timedelta(minutes=2),
    more_tsas: tuple[TsaServer, ...] = (),
) -> Store:
    """CA + station certificates, then ``orders`` recorded through the real Recorder.

    ``ca`` (a CompanyCa) certifies the key instead of a fresh "Test Co CA"; ``certify`` False
    leaves the key uncertified; ``cert_station`` certifies it under another station name;
    ``station``: the station's name (default the config's); ``ago``: how long before now the
    recording (as the manifests say) started — the TSA's time is now; ``more_tsas``: TSAs
    the station asks too (their roots beside ``tsa``'s in its ``tsa_ca_path``).
    """
    from station.proof.ca import CompanyCa
    from station.proof.finalizer import ProofFinalizer
    from station.proof.keys import StationKey
    from station.proof.paths import ProofPaths

    data = root / "data"
    cfg = config_mod.load(None).with_data_dir(data)
    if station is not None:
        cfg = cfg.replace("station", name=station)
    roots = tsa.root
    if more_tsas:
        roots = root / "tsa-roots.pem"
        roots.parent.mkdir(parents=True, exist_ok=True)
        roots.write_bytes(b"".join(t.root.read_bytes() for t in (tsa, *more_tsas)))
    cfg = cfg.replace(
        "proof",
        tsa_urls=(tsa.url, *(t.url for t in more_tsas)),
        tsa_ca_path=str(roots),
        checkpoint_every=2,
        c2pa=c2pa and certify,
    )
    paths = ProofPaths.from_config(cfg)
    key, _ = StationKey.load_or_create(paths.key)
    if certify:
        ca = ca or CompanyCa.create(root / "ca", "Test Co CA")
        ca.issue_station(cert_station or cfg.station.name, key.public).install(
            c2pa_key=paths.c2pa_key,
            c2pa_cert=paths.c2pa_cert,
            key_cert=paths.key_cert,
            ca_cert=paths.ca_cert,
        )
    fin = ProofFinalizer(cfg, start_worker=False, clock=lambda: True)
    done = record_orders(cfg, (fin,), orders, ago=ago)
    assert all(d.record is not None for d in done), [d.error for d in done]
    assert fin.tsa is not None
    fin.close()  # final checkpoint
    fin2 = ProofFinalizer(cfg, start_worker=False)
    assert fin2.tsa is not None
    fin2.tsa.process_due()
    fin2.close()
    return Store(cfg, data, tsa)


def presentation_s(path: Path) -> float | None:
    """How long the first video stream plays by PyAV's demuxer (FFmpeg, what players read):
    the last packet's pts minus the first's plus one frame (the median step), None if the
    file is no video. The tests' independent measure of ``clip_span_s``, which both verifiers
    use (it reads the MP4's boxes with the standard library)."""
    import itertools
    import statistics

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            stream = c.streams.video[0]
            tb = float(stream.time_base or 0) or 1 / 90_000
            pts = sorted(p.pts for p in c.demux(stream) if p.size and p.pts is not None)
    except av.FFmpegError:
        return None
    if not pts:
        return None
    steps = [b - a for a, b in itertools.pairwise(pts) if b > a]
    frame = statistics.median(steps) if steps else 0
    return float((pts[-1] - pts[0] + frame) * tb)


KIT = Path(__file__).resolve().parents[1] / "station/proof/standalone_verify.py"


def run_kit(script: Path, bundle: Path, tmp: Path, *args: str) -> tuple[int, str]:
    """A verify.py run in isolated mode (no packcam on sys.path), its temp dir in ``tmp``."""
    import sys

    (tmp / "t").mkdir(exist_ok=True)
    r = subprocess.run(
        [sys.executable, "-I", str(script), str(bundle), *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp / "t")},
        check=False,
        timeout=120,
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout


def rewrite_zip(src: Path, dst: Path, changes: dict[str, bytes | None]) -> Path:
    """Copy a zip, replacing or adding (bytes) or dropping (None) the named members."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in changes:
                new = changes[info.filename]
                if new is not None:
                    zout.writestr(info.filename, new)
            else:
                zout.writestr(info, zin.read(info))
        for name in sorted(set(changes) - set(zin.namelist())):  # new members
            new = changes[name]
            if new is not None:
                zout.writestr(name, new)
    return dst


def read_zip(path: Path, name: str) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as z:
        return z.read(name)


def bundle_index(path: Path) -> dict:
    import json

    return json.loads(read_zip(path, "bundle.json"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tsa_ec: TsaServer) -> Store:
    """Orders A1, B2, A1 again (two clips for A1), C2PA on, ECDSA TSA; do not modify: copy()."""
    return build_store(tmp_path_factory.mktemp("store"), tsa_ec, ["A1", "B2", "A1"])


def forge_log(
    bundle: Path,
    dst: Path,
    key: StationKey,
    tsa_url: str,
    edit: Callable[[dict], None],
    encode: Callable[[dict], bytes] = canonical_json,
) -> Path:
    """What the station key holder can do offline, without a witness: each clip manifest
    changed by ``edit`` and re-signed (as ``encode`` writes it), a log of its own holding them
    at their indexes (other leaves made up), its checkpoint signed, everything timestamped now
    by the TSA at ``tsa_url``, the bundle manifest re-signed. The clips' own checkpoints are
    left out."""
    import zipfile

    idx = bundle_index(bundle)
    changes: dict[str, bytes | None] = {}
    leaves: dict[int, bytes] = {}
    for e in idx["clips"]:
        body = json.loads(read_zip(bundle, e["manifest"]))
        edit(body)
        m = encode(body)
        leaves[body["seq"]] = merkle.leaf_hash(m)
        changes[e["manifest"]] = m
        changes[e["signature"]] = key.sign(m)
        for i, t in enumerate(e["timestamps"]):
            changes[t] = request_token(tsa_url, hashlib.sha256(m).digest())[0] if i == 0 else None
        e["timestamps"] = e["timestamps"][:1]
        fc = e.pop("first_checkpoint", None) or {}
        for n in [fc.get(k) for k in ("body", "signature", "consistency")] + fc.get(
            "timestamps", []
        ):
            if n:
                changes[n] = None
    size = max(leaves) + 1
    hashes_ = [leaves.get(i, hashlib.sha256(b"made up %d" % i).digest()) for i in range(size)]
    root = merkle.root(hashes_)
    cpi = idx["checkpoint"]
    station = json.loads(read_zip(bundle, cpi["body"]))["station"]
    cp = canonical_json(checkpoint_body(station, key, size, root, utc_now()))
    changes[cpi["body"]] = cp
    changes[cpi["signature"]] = key.sign(cp)
    for t in cpi.get("timestamps", []):
        changes[t] = request_token(tsa_url, hashlib.sha256(cp).digest())[0]
    for e in idx["clips"]:
        seq = json.loads(changes[e["manifest"]] or b"{}")["seq"]
        inc = json.loads(read_zip(bundle, e["inclusion"]))
        inc.update(
            log_index=seq,
            tree_size=size,
            audit_path=[h.hex() for h in merkle.inclusion_proof(seq, hashes_)],
            root_sha256=root.hex(),
        )
        changes[e["inclusion"]] = json.dumps(inc).encode()
    changes["bundle.json"] = json.dumps(idx).encode()
    tmp = rewrite_zip(bundle, dst.with_name("tmp-" + dst.name), changes)
    bm = json.loads(read_zip(bundle, "bundle/manifest.json"))
    with zipfile.ZipFile(tmp) as z:
        bm["members"] = {
            n: hashlib.sha256(z.read(n)).hexdigest()
            for n in z.namelist()
            if n not in ("bundle/manifest.json", "bundle/manifest.sig", "SHA256SUMS")
        }
    signed = canonical_json(bm)
    out = rewrite_zip(
        tmp,
        dst,
        {
            "bundle/manifest.json": signed,
            "bundle/manifest.sig": key.sign(signed),
            "SHA256SUMS": None,
        },
    )
    tmp.unlink()
    return out


def resign_bundle(
    src: Path,
    dst: Path,
    key: StationKey,
    changes: dict[str, bytes | None],
    edit_manifest: Callable[[dict], None] | None = None,
) -> Path:
    """What the station key holder can do to a bundle: change members (as rewrite_zip), then
    list them all again in the bundle manifest (edited by ``edit_manifest``) and sign it.
    SHA256SUMS is left out."""
    import zipfile

    tmp = rewrite_zip(src, dst.with_name("tmp-" + dst.name), {**changes, "SHA256SUMS": None})
    bm = json.loads(read_zip(src, "bundle/manifest.json"))
    with zipfile.ZipFile(tmp) as z:
        bm["members"] = {
            n: hashlib.sha256(z.read(n)).hexdigest()
            for n in z.namelist()
            if n not in ("bundle/manifest.json", "bundle/manifest.sig")
        }
    if edit_manifest is not None:
        edit_manifest(bm)
    signed = canonical_json(bm)
    out = rewrite_zip(
        tmp, dst, {"bundle/manifest.json": signed, "bundle/manifest.sig": key.sign(signed)}
    )
    tmp.unlink()
    return out


def leave_out_last_clip(src: Path, dst: Path, key: StationKey) -> Path:
    """The bundle without its last clip: that clip's members dropped, bundle.json and the
    signed bundle manifest's ``order_clips`` edited to match, re-signed with ``key`` (how the
    key holder hides the clip that shows the wrong item; offline nothing contradicts it)."""
    import zipfile

    from station.proof.standalone_verify import unreferenced_members

    idx = bundle_index(src)
    idx["clips"] = idx["clips"][:-1]
    with zipfile.ZipFile(src) as z:
        gone: dict[str, bytes | None] = dict.fromkeys(unreferenced_members(idx, z.namelist()))
    kept = [json.loads(read_zip(src, e["manifest"]))["seq"] for e in idx["clips"]]

    def edit(bm: dict) -> None:
        bm["order_clips"] = kept

    gone["bundle.json"] = json.dumps(idx).encode()
    return resign_bundle(src, dst, key, gone, edit_manifest=edit)


def garbage_bundles(directory: Path) -> dict[str, Path]:
    """Zips that are not evidence bundles but make a careless reader raise something other
    than BadZipFile/ValueError: JSON of another shape, nested too deep, an encrypted member,
    an unknown compression method, a corrupt deflate stream."""
    import zipfile

    def make(name: str, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
        path = directory / name
        with zipfile.ZipFile(path, "w", method) as zf:
            for n, d in members.items():
                zf.writestr(n, d)
        return path

    def patch(path: Path, central: int, local: int, value: int, *, bits: bool = False) -> Path:
        data = bytearray(path.read_bytes())
        for sig, off in ((b"PK\x01\x02", central), (b"PK\x03\x04", local)):
            at = data.find(sig) + off
            data[at] = data[at] | value if bits else value
        path.write_bytes(bytes(data))
        return path

    out = {
        "list": make("list.zip", {"bundle.json": b"[1, 2]"}),
        "string": make("string.zip", {"bundle.json": b'"packcam-evidence-bundle"'}),
        "deep": make("deep.zip", {"bundle.json": b"[" * 100_000 + b"]" * 100_000}),
    }
    out["encrypted"] = patch(make("enc.zip", {"bundle.json": b"{}"}), 8, 6, 1, bits=True)
    out["method"] = patch(make("method.zip", {"bundle.json": b"{}"}), 10, 8, 99)
    deflated = make("deflate.zip", {"bundle.json": b"{}" * 1000}, zipfile.ZIP_DEFLATED)
    data = bytearray(deflated.read_bytes())
    start = 30 + len("bundle.json")  # the local header, then the compressed stream
    data[start : start + 8] = b"\xff" * 8  # an invalid deflate block type
    deflated.write_bytes(bytes(data))
    out["deflate"] = deflated
    return out


def witness_doc(
    bundle: Path, key: StationKey, cosigned: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """A ``GET /witness/<station>`` document whose witness ``key`` cosigned the bundle's
    checkpoint (central.witness.cosign): the central site's own when ``key`` is its witness
    key, a forgery when it is anyone else's (the seller's). ``cosigned``: the checkpoints it
    cosigned instead, as (body, signature) members of the bundle (a clip's own checkpoint)."""
    import base64
    import json

    from central.witness import cosign

    cpi = bundle_index(bundle)["checkpoint"]

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    def entry(body_name: str, sig_name: str) -> dict[str, Any]:
        body = read_zip(bundle, body_name)
        cp = json.loads(body)
        statement, cosignature = cosign(
            key, str(cp["station"]), body, int(cp["tree_size"]), str(cp["root_sha256"])
        )
        return {
            "tree_size": cp["tree_size"],
            "root_sha256": cp["root_sha256"],
            "body_b64": b64(body),
            "signature_b64": b64(read_zip(bundle, sig_name)),
            "cosignature_b64": b64(cosignature),
            "cosigned_b64": b64(statement),
        }

    members = cosigned if cosigned is not None else [(cpi["body"], cpi["signature"])]
    return {
        "station": json.loads(read_zip(bundle, cpi["body"]))["station"],
        "witness_key": key.fingerprint,
        "public_key_pem": key.public_pem().decode("ascii"),
        "checkpoints": [entry(b, s) for b, s in members],
        "alarms": [],
        "rotations": [],
    }
