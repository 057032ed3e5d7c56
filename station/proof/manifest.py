"""The signed clip manifest: canonical JSON bytes, a detached Ed25519 signature, a hash chain."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from station.proof import PROOF_VERSION, ProofError
from station.proof.canonical import canonical_json
from station.proof.keys import SIG_ALG, StationKey, verify_signature

MANIFEST_TYPE = "packcam-clip-manifest"
SIGNATURE_FIELD = "signature"
GENESIS = "0" * 64  # prev_manifest_sha256 of the first manifest in a log


@dataclass(frozen=True)
class SignedManifest:
    """``canonical`` is exactly what was signed, hashed into the log and timestamped."""

    body: dict[str, Any]
    canonical: bytes
    signature: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical).hexdigest()

    @property
    def key_fingerprint(self) -> str:
        return str(self.body.get("station_key", ""))

    def sidecar(self) -> dict[str, Any]:
        """The JSON the recorder writes next to the clip: the body plus the signature block."""
        return {
            **self.body,
            SIGNATURE_FIELD: {
                "alg": SIG_ALG,
                "key": self.key_fingerprint,
                "value": base64.b64encode(self.signature).decode("ascii"),
                "manifest_sha256": self.sha256,
            },
        }

    def verify(self, public: Ed25519PublicKey) -> bool:
        return verify_signature(public, self.canonical, self.signature)


def build_body(
    data: dict[str, Any],
    *,
    seq: int,
    prev_manifest_sha256: str,
    key: StationKey,
    clock_synced: bool | None,
    signed_at: str,
    c2pa: dict[str, Any] | None,
) -> dict[str, Any]:
    """The recorder's manifest dict plus the proof fields (any old signature block dropped)."""
    body = {k: v for k, v in data.items() if k != SIGNATURE_FIELD}
    body.update(
        manifest_type=MANIFEST_TYPE,
        proof_version=PROOF_VERSION,
        seq=seq,
        prev_manifest_sha256=prev_manifest_sha256,
        station_key=key.fingerprint,
        clock_synced=clock_synced,
        signed_at=signed_at,
        c2pa=c2pa,
    )
    return body


def sign(body: dict[str, Any], key: StationKey) -> SignedManifest:
    if SIGNATURE_FIELD in body:
        raise ValueError("the body to sign must not carry a signature")
    canonical = canonical_json(body)
    return SignedManifest(body=body, canonical=canonical, signature=key.sign(canonical))


def from_sidecar(data: dict[str, Any]) -> SignedManifest:
    """Re-derive the signed bytes from a sidecar JSON (pretty-printed or not)."""
    sig = data.get(SIGNATURE_FIELD)
    if not isinstance(sig, dict) or not isinstance(sig.get("value"), str):
        raise ProofError("the manifest carries no signature block")
    if sig.get("alg") != SIG_ALG:
        raise ProofError(f"unsupported manifest signature algorithm {sig.get('alg')!r}")
    try:
        raw = base64.b64decode(sig["value"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProofError(f"manifest signature is not base64: {exc}") from exc
    body = {k: v for k, v in data.items() if k != SIGNATURE_FIELD}
    try:
        canonical = canonical_json(body)
    except (TypeError, ValueError) as exc:
        raise ProofError(f"manifest is not canonicalisable JSON: {exc}") from exc
    return SignedManifest(body=body, canonical=canonical, signature=raw)


def from_canonical(canonical: bytes, signature: bytes) -> SignedManifest:
    """A manifest from its exact signed bytes (as in the log and in a bundle)."""
    try:
        body = json.loads(canonical.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProofError(f"manifest bytes are not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ProofError("manifest is not a JSON object")
    return SignedManifest(body=body, canonical=canonical, signature=signature)
