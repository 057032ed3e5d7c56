"""Embed and read C2PA manifests in MP4 clips with c2pa-python (optional dependency)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from station.proof import ProofError
from station.store.files import fsync_dir
from station.store.mp4box import iter_boxes

log = logging.getLogger(__name__)

ASSERTION_LABEL = "com.packcam.clip"
DIGITAL_CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"

try:  # c2pa-python ships a native library; a station without it still records and signs
    import c2pa as _c2pa
except ImportError as _exc:  # pragma: no cover - depends on the install
    _c2pa = None
    _IMPORT_ERROR: str | None = str(_exc)
else:
    _IMPORT_ERROR = None


def c2pa_available() -> bool:
    return _c2pa is not None


def unavailable_reason() -> str | None:
    return None if _c2pa is not None else f"c2pa-python is not installed ({_IMPORT_ERROR})"


# c2pa-rs hashes fragmented MP4 box by box and its cost grows faster than linearly with the
# number of fragments: a 10-minute clip written with one fragment per frame (18 000 moofs) took
# 159 s to sign and 40 s to verify here, the same clip with one fragment per keyframe 1.2 s and
# 0.2 s. So before embedding, such a clip is remuxed (packets copied, nothing re-encoded) to one
# fragment per keyframe: still fragmented and streamable, the same frames bit for bit.
MAX_FRAGMENTS = 600
REMUX_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


def count_fragments(path: Path) -> int:
    """Top-level ``moof`` boxes, read from the box headers only."""
    return sum(box.kind == b"moof" for box in iter_boxes(path))


def compact_fragments(path: Path) -> bool:
    """Remux ``path`` in place to one fragment per keyframe (stream copy); False if unchanged."""

    tmp = path.with_name(path.name + ".remux.tmp")
    copied = source = 0
    try:
        with (
            av.open(str(path)) as src,
            av.open(str(tmp), "w", format="mp4", options={"movflags": REMUX_MOVFLAGS}) as dst,
        ):
            vin = src.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            for packet in src.demux(vin):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                source += 1
                packet.stream = vout
                dst.mux(packet)
                copied += 1
        with av.open(str(tmp)) as check:
            again = sum(1 for p in check.demux(check.streams.video[0]) if p.dts is not None)
    except (av.FFmpegError, OSError, IndexError) as exc:
        tmp.unlink(missing_ok=True)
        log.warning("could not remux %s before C2PA signing: %s", path.name, exc)
        return False
    if again != source or copied != source:
        tmp.unlink(missing_ok=True)
        log.warning(
            "remux of %s lost packets (%d of %d); keeping the original", path, again, source
        )
        return False
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return True


class C2paEmbedder:
    """Signs a C2PA manifest (``c2pa.created`` / digital capture + our assertion) into an MP4.

    The file is rewritten through a temp file in the same directory and renamed over the
    original, so a crash leaves either the old or the new clip, never half of one.
    """

    def __init__(
        self,
        chain_pem: bytes,
        key_pem: bytes,
        *,
        tsa_url: str | None = None,
        software: str = "packcam",
        version: str = "",
    ) -> None:
        if _c2pa is None:
            raise ProofError(unavailable_reason() or "c2pa-python unavailable")
        self.chain_pem = chain_pem
        self.key_pem = key_pem
        self.tsa_url = tsa_url
        self._context = _c2pa.Context.from_dict(
            {
                "builder": {
                    "thumbnail": {"enabled": False},
                    "claim_generator_info": {"name": software, "version": version},
                },
                "verify": {"verify_after_sign": False},
            }
        )

    def _signer(self, tsa: str | None) -> Any:
        assert _c2pa is not None
        info = _c2pa.C2paSignerInfo(b"es256", self.chain_pem, self.key_pem, tsa)
        return _c2pa.Signer.from_info(info)

    def embed(self, path: Path, assertion: dict[str, Any], *, title: str) -> dict[str, Any]:
        """Rewrite ``path`` with an embedded, signed C2PA manifest; say what was done."""
        assert _c2pa is not None
        definition = {
            "title": title,
            "format": "video/mp4",
            "assertions": [
                {
                    "label": "c2pa.actions",
                    "data": {
                        "actions": [
                            {"action": "c2pa.created", "digitalSourceType": DIGITAL_CAPTURE}
                        ]
                    },
                },
                {"label": ASSERTION_LABEL, "data": assertion},
            ],
        }
        fragments = count_fragments(path)
        remuxed = fragments > MAX_FRAGMENTS and compact_fragments(path)
        if remuxed:
            log.info("%s: %d fragments remuxed to one per keyframe for C2PA", path.name, fragments)
        tmp = path.with_name(path.name + ".c2pa.tmp")
        attempts = [self.tsa_url, None] if self.tsa_url else [None]
        last: Exception | None = None
        for tsa in attempts:
            try:
                builder = _c2pa.Builder(definition, context=self._context)
                with path.open("rb") as src, tmp.open("w+b") as dst:
                    builder.sign(self._signer(tsa), "video/mp4", src, dst)
                    dst.flush()
                    os.fsync(dst.fileno())
                break
            except Exception as exc:  # a native library: any failure means "no C2PA"
                last = exc
                tmp.unlink(missing_ok=True)
                if tsa:
                    log.warning("C2PA signing with TSA %s failed (%s); signing without", tsa, exc)
        else:
            raise ProofError(f"C2PA signing failed: {last}")
        os.replace(tmp, path)
        fsync_dir(path.parent)
        info = read_c2pa(path)
        return {
            "label": info.label or "",
            "assertion": ASSERTION_LABEL,
            "timestamped": info.timestamped,
            "remuxed_from_fragments": fragments if remuxed else None,
        }


@dataclass(frozen=True)
class C2paInfo:
    """What a C2PA reader says about a file."""

    present: bool
    state: str | None = None  # Invalid | Valid | Trusted
    label: str | None = None
    assertion: dict[str, Any] | None = None
    signer: str | None = None
    failures: list[str] = field(default_factory=list)
    timestamped: bool = False
    error: str | None = None


def read_c2pa(path: Path, trust_pem: bytes | None = None, *, validate: bool = True) -> C2paInfo:
    """Read and validate the embedded manifest; ``trust_pem`` are the company root(s).

    ``validate=False`` only reads what the manifest claims (to explain a damaged file).
    """
    if _c2pa is None:
        return C2paInfo(present=False, error=unavailable_reason())
    settings: dict[str, Any] = {
        "verify": {
            "remote_manifest_fetch": False,
            "ocsp_fetch": False,
            "verify_after_reading": validate,
        }
    }
    if trust_pem:
        settings["trust"] = {"user_anchors": trust_pem.decode("ascii", "replace")}
    try:
        ctx = _c2pa.Context.from_dict(settings)
        with path.open("rb") as f:
            reader = _c2pa.Reader.try_create("video/mp4", f, None, ctx)
            if reader is None:
                return C2paInfo(present=False)
            with contextlib.closing(reader):
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
                active = reader.get_active_manifest() or {}
    except _c2pa.C2paError as exc:
        return C2paInfo(present=True, state="Invalid", error=str(exc), failures=[str(exc)])
    failures = [
        f"{f.get('code')}: {f.get('explanation', '')}"
        for f in (results.get("activeManifest") or {}).get("failure", [])
    ]
    assertion = None
    for a in active.get("assertions", []):
        if a.get("label") == ASSERTION_LABEL:
            assertion = a.get("data")
    sig = active.get("signature_info") or {}
    return C2paInfo(
        present=True,
        state=state,
        label=active.get("label"),
        assertion=assertion,
        signer=sig.get("common_name") or sig.get("issuer"),
        failures=failures,
        timestamped=bool(sig.get("time")),
    )


def describe(info: C2paInfo) -> str:
    return json.dumps(
        {
            "state": info.state,
            "label": info.label,
            "signer": info.signer,
            "failures": info.failures,
        },
        ensure_ascii=False,
    )
