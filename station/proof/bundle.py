"""Evidence bundle export: clips, signed manifests, tokens, log proof, keys, key frames, summary."""

from __future__ import annotations

import hashlib
import html
import io
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

import station
from station.config import Config
from station.ledger import ClipRecord, Ledger
from station.proof import ProofError
from station.proof import manifest as manifest_mod
from station.proof.ca import cert_fingerprint
from station.proof.keys import StationKey, public_pem, station_public_key
from station.proof.log import Checkpoint, ProofLog
from station.proof.paths import ProofPaths
from station.proof.tsa import TsaQueue, load_roots
from station.proof.verify import BUNDLE_FORMAT

log = logging.getLogger(__name__)

MAX_FRAMES_PER_CLIP = 8


@dataclass
class ExportResult:
    path: Path
    clips: int
    frames: int
    timestamps: int
    checkpoint_size: int
    warnings: list[str] = field(default_factory=list)


def keyframe_times(body: dict[str, Any]) -> list[tuple[float, str]]:
    """(seconds into the clip, label) for the first frame, each scan event and the last frame."""
    duration = float(body.get("duration_s") or 0.0)
    out: list[tuple[float, str]] = [(0.0, "start")]
    for ev in body.get("events", []):
        t = ev.get("t_clip_s")
        if isinstance(t, int | float):
            out.append((max(0.0, float(t)), f"{ev.get('kind', 'scan')}"))
    out.append((max(0.0, duration - 0.2), "end"))
    picked: list[tuple[float, str]] = []
    for t, label in sorted(out):
        if picked and t - picked[-1][0] < 0.5:
            continue
        picked.append((t, label))
    return picked[:MAX_FRAMES_PER_CLIP]


def extract_jpegs(clip: Path, times: list[tuple[float, str]]) -> list[tuple[float, str, bytes]]:
    """Decode the frame shown at each time (seek to the keyframe before, decode forward)."""
    import av

    out: list[tuple[float, str, bytes]] = []
    try:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            tb = stream.time_base
            start = stream.start_time or 0
            for t, label in times:
                target = start + int(t / tb) if tb else 0
                container.seek(target, stream=stream, backward=True, any_frame=False)
                chosen = None
                for frame in container.decode(stream):
                    chosen = frame
                    if frame.pts is not None and frame.pts >= target:
                        break
                if chosen is None:
                    continue
                buf = io.BytesIO()
                chosen.to_image().save(buf, "JPEG", quality=85)
                out.append((t, label, buf.getvalue()))
    except (av.FFmpegError, OSError, IndexError) as exc:
        log.warning("no key frames from %s: %s", clip, exc)
    return out


def _latest_covering(plog: ProofLog, need: int) -> Checkpoint | None:
    cp = plog.latest_checkpoint()
    return cp if cp is not None and cp.tree_size >= need else None


def export_order(cfg: Config, order_id: str, out: Path) -> ExportResult:
    """Write the evidence bundle of every clip of ``order_id`` to ``out`` (a zip)."""
    data_dir = cfg.station.data_dir
    paths = ProofPaths.from_config(cfg)
    ledger = Ledger.in_data_dir(data_dir)
    plog = ProofLog.in_data_dir(data_dir)
    try:
        records = ledger.clips(order_id)
        if not records:
            raise ProofError(f"no clips for order {order_id!r} in {data_dir}")
        return _export(cfg, paths, plog, records, order_id, out)
    finally:
        plog.close()
        ledger.close()


def _export(
    cfg: Config,
    paths: ProofPaths,
    plog: ProofLog,
    records: list[ClipRecord],
    order_id: str,
    out: Path,
) -> ExportResult:
    warnings: list[str] = []
    entries = []
    for r in records:
        e = plog.entries_for_clip(r.sha256)
        entries.append(e[-1] if e else None)
        if not e:
            warnings.append(f"{r.path} has no signed manifest (recorded before proof was on?)")
    need = max((e.seq + 1 for e in entries if e is not None), default=0)
    queue = None
    if cfg.proof.tsa_urls:
        queue = TsaQueue(
            plog,
            roots=load_roots(paths.tsa_ca),
            timeout_s=cfg.proof.tsa_timeout_s,
            retry_s=cfg.proof.tsa_retry_s,
        )
    cp = _latest_covering(plog, need) if need else None
    if need and cp is None:
        try:
            key = StationKey.load(paths.key)  # a new checkpoint needs the private key
        except ProofError as exc:
            raise ProofError(
                f"no signed checkpoint covers the newest clip yet, and this process cannot sign "
                f"one ({exc}); the station signs one every proof.checkpoint_every clips and when "
                "it stops"
            ) from exc
        cp = plog.checkpoint(key, cfg.station.name)
        if cp is not None and cfg.proof.tsa_urls:
            plog.enqueue_timestamp("checkpoint", cp.sha256, cfg.proof.tsa_urls)
    if queue is not None:
        queue.process_due()  # fetch what is still queued, once
        pending = plog.pending_count()
        if pending:
            warnings.append(f"{pending} timestamp request(s) still pending (TSA unreachable)")
    if cp is None:
        raise ProofError("no signed log entries to export")

    station_pub = public_pem(station_public_key(paths.public_key, paths.key))

    files: dict[str, bytes | Path] = {}
    keys: dict[str, str | None] = {"station_public_key": "keys/station-key.pub.pem"}
    files["keys/station-key.pub.pem"] = station_pub
    ca_fp = None
    for name, src in (
        ("station_key_certificate", paths.key_cert),
        ("company_ca", paths.ca_cert),
        ("c2pa_chain", paths.c2pa_cert),
        ("tsa_roots", paths.tsa_ca),
    ):
        if src is not None and src.exists():
            arc = f"keys/{src.name}" if name != "tsa_roots" else "keys/tsa-roots.pem"
            files[arc] = src.read_bytes()
            keys[name] = arc
            if name == "company_ca":
                ca_fp = cert_fingerprint(x509.load_pem_x509_certificate(src.read_bytes()))
        else:
            keys[name] = None

    cp_tokens = [t.token for t in plog.timestamps_for(cp.sha256) if t.token]
    files["log/checkpoint.json"] = cp.body
    files["log/checkpoint.sig"] = cp.signature
    cp_ts_names = []
    for i, tok in enumerate(cp_tokens):
        files[f"log/checkpoint.{i}.tst"] = tok
        cp_ts_names.append(f"log/checkpoint.{i}.tst")

    clips_index = []
    summaries = []
    n_frames = n_tokens = 0
    for r, e in zip(records, entries, strict=True):
        clip_path = cfg.station.data_dir / r.path
        if not clip_path.exists():
            raise ProofError(f"clip {r.path} is missing from {cfg.station.data_dir}")
        stem = Path(r.path).stem
        item: dict[str, Any] = {"clip": f"clips/{Path(r.path).name}"}
        files[item["clip"]] = clip_path
        body: dict[str, Any] = {}
        if e is not None:
            m = manifest_mod.from_canonical(e.manifest, e.signature)
            body = m.body
            item["manifest"] = f"manifests/{stem}.manifest.json"
            item["signature"] = f"manifests/{stem}.manifest.sig"
            files[item["manifest"]] = e.manifest
            files[item["signature"]] = e.signature
            tokens = [t.token for t in plog.timestamps_for(e.manifest_sha256) if t.token]
            item["timestamps"] = []
            for i, tok in enumerate(tokens):
                name = f"manifests/{stem}.manifest.{i}.tst"
                files[name] = tok
                item["timestamps"].append(name)
            n_tokens += len(tokens)
            proof = plog.inclusion_proof(e.seq, cp.tree_size)
            inc = {
                "log_index": e.seq,
                "tree_size": cp.tree_size,
                "leaf_hash": e.leaf_hash,
                "root_sha256": cp.root_hash,
                "audit_path": [h.hex() for h in proof],
                "hashing": "RFC 6962: leaf = SHA-256(0x00 || manifest bytes), "
                "node = SHA-256(0x01 || left || right)",
            }
            item["inclusion"] = f"log/{stem}.inclusion.json"
            files[item["inclusion"]] = json.dumps(inc, indent=2).encode()
        else:
            item["manifest"] = None
            body = r.to_json()
        frames = extract_jpegs(clip_path, keyframe_times(body))
        item["frames"] = []
        for t, label, jpg in frames:
            name = f"frames/{stem}_{t:07.2f}s_{label}.jpg"
            files[name] = jpg
            item["frames"].append({"file": name, "t_clip_s": round(t, 2), "label": label})
        n_frames += len(frames)
        clips_index.append(item)
        summaries.append((r, body, item, e.seq if e else None, len(item.get("timestamps", []))))

    index = {
        "format": BUNDLE_FORMAT,
        "version": 1,
        "order_id": order_id,
        "station": cfg.station.name,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": f"packcam {station.__version__}",
        "keys": keys,
        "checkpoint": {
            "body": "log/checkpoint.json",
            "signature": "log/checkpoint.sig",
            "timestamps": cp_ts_names,
        },
        "clips": clips_index,
        "warnings": warnings,
    }
    files["bundle.json"] = json.dumps(index, indent=2, ensure_ascii=False).encode()
    files["VERIFY.md"] = verify_md(index, ca_fp).encode()
    files["summary.html"] = summary_html(index, summaries, cp, ca_fp).encode()
    _write_zip(out, files)
    log.info("exported order %r: %d clip(s) -> %s", order_id, len(records), out)
    return ExportResult(out, len(records), n_frames, n_tokens, cp.tree_size, warnings)


def _write_zip(out: Path, files: dict[str, bytes | Path]) -> None:
    sums = []
    tmp = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            src = files[name]
            if isinstance(src, Path):
                h = hashlib.sha256()
                with src.open("rb") as f:
                    while block := f.read(1 << 20):
                        h.update(block)
                # video does not compress; storing keeps extraction a plain copy
                zf.write(src, name, compress_type=zipfile.ZIP_STORED)
                sums.append((h.hexdigest(), name))
            else:
                zf.writestr(name, src)
                sums.append((hashlib.sha256(src).hexdigest(), name))
        zf.writestr("SHA256SUMS", "".join(f"{h}  {n}\n" for h, n in sums))
    os.replace(tmp, out)


VERIFY_TEMPLATE = """\
# How to verify this evidence bundle / 如何验证本证据包

Order / 订单: **{order}** — station / 工位: **{station}** — created {created}

Everything below uses only this bundle. Nothing needs the seller's server.
以下步骤只需本证据包，无需访问卖家服务器。

## 1. With packcam

    packcam verify {bundle_name}
    packcam verify --ca company-ca.crt --tsa-ca tsa-root.pem {bundle_name}

Exit code 0 means authentic; every check prints its reason. Pin the company CA (`--ca`) and the
TSA's root (`--tsa-ca`) with copies you obtained independently (the seller's published
fingerprint: {ca_fp}).

## 2. With standard tools (Linux/macOS: sha256sum, openssl 3)

Unzip the bundle, then for each clip `X` (see `bundle.json`):

1. **The video is the recorded one.** Its SHA-256 must equal the `"sha256"` field of its manifest:

       sha256sum clips/X.mp4
       python3 -m json.tool manifests/X.manifest.json | grep '"sha256"'

2. **The station signed the manifest** (Ed25519 over the exact bytes of the manifest file):

       openssl pkeyutl -verify -pubin -inkey keys/station-key.pub.pem -rawin \\
           -in manifests/X.manifest.json -sigfile manifests/X.manifest.sig

   The station key's certificate from the company CA:

       openssl verify -CAfile keys/company-ca.crt keys/station-key.crt
       openssl x509 -in keys/station-key.crt -noout -pubkey    # equals station-key.pub.pem

3. **Trusted time (RFC 3161, 可信时间戳).** The token proves the manifest existed at its time:

       openssl ts -verify -token_in -in manifests/X.manifest.0.tst \\
           -data manifests/X.manifest.json -CAfile keys/tsa-roots.pem
       openssl ts -reply -token_in -in manifests/X.manifest.0.tst -text   # shows "Time stamp:"

   Use the TSA's own published root certificate rather than the bundled copy if you can.

4. **The clip is in the station's append-only log** (RFC 6962 / RFC 9162 Merkle tree).
   `log/X.inclusion.json` has the audit path from the leaf
   `SHA-256(0x00 || manifest bytes)` to `root_sha256` of `log/checkpoint.json`;
   the checkpoint is signed like a manifest:

       openssl pkeyutl -verify -pubin -inkey keys/station-key.pub.pem -rawin \\
           -in log/checkpoint.json -sigfile log/checkpoint.sig
       openssl ts -verify -token_in -in log/checkpoint.0.tst -data log/checkpoint.json \\
           -CAfile keys/tsa-roots.pem

   Recomputing the audit path needs a few lines of code (RFC 9162 section 2.1.3.2);
   `packcam verify` does it.

5. **C2PA** (if the clip carries a C2PA manifest): any C2PA reader, e.g. `c2patool clips/X.mp4`,
   shows the signer (the station certificate, chaining to the company CA), the order, waybill
   and log index.

`SHA256SUMS` lists every file of the bundle (`sha256sum -c SHA256SUMS`); it only detects
transport damage — the signatures above are what prove authenticity.
"""


def verify_md(index: dict[str, Any], ca_fp: str | None) -> str:
    return VERIFY_TEMPLATE.format(
        order=index["order_id"],
        station=index["station"],
        created=index["created_utc"],
        bundle_name="bundle.zip",
        ca_fp=ca_fp or "not certified",
    )


def _tokens_text(n: int) -> str:
    if n:
        return f"{n} 个时间戳 · {n} token(s) from a time-stamping authority"
    return "无 · none: the recording time rests on the station's clock alone"


def _clock_text(synced: object) -> str:
    if synced is True:
        return "是 · yes, the station's clock was NTP-synchronised when it recorded"
    if synced is False:
        return "否 · no: the station's clock was not NTP-synchronised; its times may be off"
    return "未记录 · not recorded"


def _intro_html(tokens: int, clips: int) -> str:
    """What the bundle proves, and only that: the time claim only with tokens in it."""
    zh = "本证据包中的视频由打包工位在录制时计算哈希、以工位密钥签名，并写入只可追加的日志"
    en = (
        "Each clip in this bundle was hashed and signed by the packing station's key when it "
        "was recorded, and appended to the station's append-only log"
    )
    if tokens:
        zh += "；可信时间戳（RFC 3161）证明签名时间"
        en += (
            f"; {tokens} RFC 3161 token(s) from a time-stamping authority prove when it was signed"
        )
    else:
        zh += "；本包不含可信时间戳，录制时间仅来自工位时钟"
        en += (
            ". It holds no RFC 3161 timestamp: the recording times rest on the station's "
            "clock alone"
        )
    return (
        f"<p>{zh}。验证方法见 VERIFY.md。<br>\n{en}. See VERIFY.md for how anyone can check "
        "this without the seller.</p>"
    )


def summary_html(
    index: dict[str, Any],
    summaries: list[tuple[ClipRecord, dict[str, Any], dict[str, Any], int | None, int]],
    cp: Checkpoint,
    ca_fp: str | None,
) -> str:
    e = html.escape
    rows = []
    for r, body, item, seq, n_tokens in summaries:
        frames = "".join(
            f'<figure><img src="{e(f["file"])}" alt="{e(f["label"])}">'
            f"<figcaption>{e(f['label'])} · {f['t_clip_s']:.1f}s</figcaption></figure>"
            for f in item["frames"]
        )
        rows.append(
            f"""<section class="clip">
<h2>{e(Path(r.path).name)}</h2>
<table>
<tr><th>订单 Order</th><td>{e(r.order_id)}</td></tr>
<tr><th>运单 Waybill</th><td>{e(", ".join(w.waybill for w in r.waybills) or "—")}</td></tr>
<tr><th>工位 Station</th><td>{e(r.station)}</td></tr>
<tr><th>开始 Start</th><td>{e(r.started_at.isoformat(timespec="seconds"))}</td></tr>
<tr><th>结束 End</th><td>{e(r.ended_at.isoformat(timespec="seconds"))}
 ({r.duration_s:.1f} s, {e(r.finish_reason)})</td></tr>
<tr><th>SHA-256</th><td><code>{e(r.sha256)}</code> ({r.size} bytes)</td></tr>
<tr><th>日志序号 Log entry</th><td>{"—" if seq is None else seq} / {cp.tree_size}</td></tr>
<tr><th>可信时间戳 RFC 3161</th><td>{_tokens_text(n_tokens)}</td></tr>
<tr><th>时钟同步 NTP</th><td>{_clock_text(body.get("clock_synced"))}</td></tr>
</table>
<div class="frames">{frames}</div>
</section>"""
        )
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>证据包 Evidence bundle — {e(index["order_id"])}</title>
<style>
body{{font-family:system-ui,"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;margin:1.5em;
max-width:60em}} th{{text-align:left;padding-right:1em;white-space:nowrap}}
code{{font-size:.8em;word-break:break-all}} .frames{{display:flex;flex-wrap:wrap;gap:.5em}}
figure{{margin:0}} img{{width:12em;border:1px solid #999}} figcaption{{font-size:.8em}}
.clip{{border-top:1px solid #ccc;margin-top:1em}}
</style></head><body>
<h1>打包视频证据 · Packing video evidence</h1>
<p>订单 Order <b>{e(index["order_id"])}</b> · 工位 Station <b>{e(index["station"])}</b>
· 导出 Exported {e(index["created_utc"])} · {e(index["software"])}</p>
{_intro_html(sum(n for *_, n in summaries), len(summaries))}
<p>公司根证书 Company CA: <code>{e(ca_fp or "—")}</code></p>
{"".join(rows)}
</body></html>
"""
