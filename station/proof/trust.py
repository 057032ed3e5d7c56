"""Trust anchors a verifier brings (pinned CA/TSA certificates or fingerprints), chain checks."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from station.proof import ProofError
from station.proof.ca import cert_fingerprint as cert_sha256
from station.proof.keys import fingerprint, load_public_pem

TRUST_FILE_NAME = "trust"
MAX_CHAIN_DEPTH = 4  # root -> (intermediate) -> leaf; public TSAs use one intermediate
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ChainError(Exception):
    """A certificate does not chain to a trusted root under the policy; the text says why."""


def normalise_fingerprint(text: str) -> str | None:
    """``SHA256:<hex>`` from the usual spellings (``SHA256:ab..``, ``AB:CD:..``, openssl's
    ``sha256 Fingerprint=AB:..``); None when ``text`` is not a SHA-256 fingerprint."""
    s = text.strip()
    if "=" in s:
        s = s.split("=", 1)[1]
    s = s.strip().lower()
    if s.startswith("sha256:"):
        s = s[7:]
    s = s.replace(":", "").replace(" ", "")
    return "SHA256:" + s if _HEX64.match(s) else None


@dataclass(frozen=True)
class Anchors:
    """What the person verifying trusts: company CAs and TSA roots, as certificates or
    SHA-256 fingerprints. A fingerprint makes a matching certificate found in the evidence
    trusted — the evidence never vouches for itself otherwise."""

    ca: tuple[x509.Certificate, ...] = ()
    ca_fps: frozenset[str] = frozenset()
    tsa: tuple[x509.Certificate, ...] = ()
    tsa_fps: frozenset[str] = frozenset()
    sources: tuple[str, ...] = field(default=())

    @property
    def has_ca(self) -> bool:
        return bool(self.ca or self.ca_fps)

    @property
    def has_tsa(self) -> bool:
        return bool(self.tsa or self.tsa_fps)

    def trusted_ca(self, candidates: Iterable[x509.Certificate] = ()) -> list[x509.Certificate]:
        return _pick(self.ca, self.ca_fps, candidates)

    def trusted_tsa(self, candidates: Iterable[x509.Certificate] = ()) -> list[x509.Certificate]:
        return _pick(self.tsa, self.tsa_fps, candidates)

    def merged(self, other: Anchors) -> Anchors:
        return Anchors(
            ca=self.ca + other.ca,
            ca_fps=self.ca_fps | other.ca_fps,
            tsa=self.tsa + other.tsa,
            tsa_fps=self.tsa_fps | other.tsa_fps,
            sources=self.sources + other.sources,
        )

    def describe(self) -> list[str]:
        out = [f"company CA {cert_sha256(c)}" for c in self.ca]
        out += [f"company CA {fp}" for fp in sorted(self.ca_fps)]
        out += [f"TSA root {cert_sha256(c)}" for c in self.tsa]
        out += [f"TSA root {fp}" for fp in sorted(self.tsa_fps)]
        return out


def _pick(
    certs: Sequence[x509.Certificate], fps: frozenset[str], candidates: Iterable[x509.Certificate]
) -> list[x509.Certificate]:
    out = list(certs)
    seen = {cert_sha256(c) for c in out}
    for c in candidates:
        fp = cert_sha256(c)
        if fp in fps and fp not in seen:
            out.append(c)
            seen.add(fp)
    return out


def parse_pin(value: str, *, base: Path | None = None) -> tuple[list[x509.Certificate], set[str]]:
    """One ``--ca``/``--tsa-ca`` value: a SHA-256 fingerprint or a PEM file of certificates."""
    fp = normalise_fingerprint(value)
    if fp is not None:
        return [], {fp}
    p = Path(value).expanduser()
    if base is not None and not p.is_absolute():
        p = base / p
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ProofError(
            f"{value!r} is neither a SHA-256 fingerprint nor a readable certificate file: {exc}"
        ) from exc
    try:
        return x509.load_pem_x509_certificates(data), set()
    except ValueError as exc:
        raise ProofError(f"{p} is not a PEM certificate file: {exc}") from exc


def parse_witness_pin(value: str) -> str:
    """A ``--witness-key`` value: the witness key's SHA-256 fingerprint (as ``GET /witness``
    and the verifiers print it) or its Ed25519 public key as a PEM file; its fingerprint."""
    fp = normalise_fingerprint(value)
    if fp is not None:
        return fp
    p = Path(value).expanduser()
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ProofError(
            f"{value!r} is neither a SHA-256 fingerprint nor a readable public key file: {exc}"
        ) from exc
    try:
        return fingerprint(load_public_pem(data))
    except ProofError as exc:
        raise ProofError(f"{p}: {exc}") from exc


def load_trust_file(path: Path) -> Anchors:
    """Lines ``ca <fingerprint|file>`` or ``tsa <fingerprint|file>``; ``#`` starts a comment."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ProofError(f"cannot read trust file {path}: {exc}") from exc
    ca: list[x509.Certificate] = []
    tsa: list[x509.Certificate] = []
    ca_fps: set[str] = set()
    tsa_fps: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, value = line.partition(" ")
        if kind not in ("ca", "tsa") or not value.strip():
            raise ProofError(
                f"{path}:{n}: expected 'ca <fingerprint or file>' or 'tsa <...>', got {raw!r}"
            )
        certs, fps = parse_pin(value.strip(), base=path.parent)
        (ca if kind == "ca" else tsa).extend(certs)
        (ca_fps if kind == "ca" else tsa_fps).update(fps)
    return Anchors(tuple(ca), frozenset(ca_fps), tuple(tsa), frozenset(tsa_fps), (str(path),))


def default_trust_path(env: Mapping[str, str] | None = None) -> Path:
    """The per-user trust file: ``$XDG_CONFIG_HOME/packcam/trust`` (~/.config/packcam/trust)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "packcam" / TRUST_FILE_NAME


def build_anchors(
    ca: Sequence[str] = (),
    tsa_ca: Sequence[str] = (),
    trust_file: str | None = None,
    *,
    use_default: bool = True,
    env: Mapping[str, str] | None = None,
) -> Anchors:
    """Anchors from the command line, ``--trust FILE`` and (if present) the per-user file."""
    out = Anchors()
    for value in ca:
        certs, fps = parse_pin(value)
        out = out.merged(Anchors(ca=tuple(certs), ca_fps=frozenset(fps), sources=("--ca",)))
    for value in tsa_ca:
        certs, fps = parse_pin(value)
        out = out.merged(Anchors(tsa=tuple(certs), tsa_fps=frozenset(fps), sources=("--tsa-ca",)))
    if trust_file:
        out = out.merged(load_trust_file(Path(trust_file).expanduser()))
    elif use_default:
        default = default_trust_path(env)
        if default.is_file():
            out = out.merged(load_trust_file(default))
    return out


# ---- chain checks (cryptography's RFC 5280 path validation) --------------------------------


def _eku_validator(
    eku: ObjectIdentifier,
) -> Callable[[object, x509.Certificate, x509.ExtendedKeyUsage | None], None]:
    def check(policy: object, cert: x509.Certificate, ext: x509.ExtendedKeyUsage | None) -> None:
        if ext is None or eku not in ext:
            raise ValueError(f"certificate lacks the extended key usage {eku.dotted_string}")

    return check


def _ku_validator(policy: object, cert: x509.Certificate, ext: x509.KeyUsage | None) -> None:
    if ext is not None and not ext.digital_signature:
        raise ValueError("certificate's key usage does not allow digitalSignature")


def verify_chain(
    leaf: x509.Certificate,
    roots: Sequence[x509.Certificate],
    at: datetime,
    *,
    eku: ObjectIdentifier,
    critical_eku: bool = False,
    intermediates: Sequence[x509.Certificate] = (),
) -> list[x509.Certificate]:
    """Path-validate ``leaf`` to one of ``roots`` at time ``at``; the chain, or ChainError.

    CA certificates follow the RFC 5280 / Web PKI CA profile (basicConstraints CA, keyCertSign,
    path length); the leaf must carry ``eku`` (critical when ``critical_eku``, as RFC 3161
    demands of a TSA) and, if it has a key usage, digitalSignature.
    """
    if not roots:
        raise ChainError("no trusted root to check against")
    ee = ExtensionPolicy.permit_all().require_present(
        x509.ExtendedKeyUsage,
        Criticality.CRITICAL if critical_eku else Criticality.AGNOSTIC,
        _eku_validator(eku),
    )
    ee = ee.may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ku_validator)
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(at)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
        .build_client_verifier()
    )
    try:
        return list(verifier.verify(leaf, list(intermediates)).chain)
    except VerificationError as exc:
        raise ChainError(str(exc)) from exc


TIME_STAMPING = ExtendedKeyUsageOID.TIME_STAMPING
