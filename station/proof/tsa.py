"""RFC 3161 trusted time: request tokens, queue and retry them offline, verify RSA/ECDSA tokens."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import algos, cms, core, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from station.proof import ProofError
from station.proof.log import ProofLog
from station.proof.trust import ChainError, verify_chain

log = logging.getLogger(__name__)

CONTENT_TYPE_QUERY = "application/timestamp-query"
CONTENT_TYPE_REPLY = "application/timestamp-reply"
MAX_REPLY_BYTES = 1 << 20
MAX_RETRY_S = 6 * 3600.0
# PKIFailureInfo bits that no retry will fix (RFC 3161 2.4.2)
_PERMANENT_FAILURES = {"bad_alg", "bad_request", "bad_data_format", "unaccepted_policy"}

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
    "sha224": hashes.SHA224(),
    "sha1": hashes.SHA1(),
}


class TokenInvalid(Exception):
    """A timestamp token failed a check; the message is the reason shown to the user."""


class TsaRejected(ProofError):
    """The TSA answered but granted no token."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class TokenInfo:
    """What a verified token says: when, over which digest, by whom."""

    gen_time: datetime
    serial: int
    policy: str
    hash_alg: str
    imprint: bytes
    nonce: int | None
    tsa_subject: str
    signer_cert: x509.Certificate
    chain_checked: bool  # False when no trusted TSA root was given
    accuracy_s: float = 0.0  # the TSA's stated accuracy (RFC 3161 2.4.2), 0 when absent


def _accuracy_s(acc: tsp.Accuracy) -> float:
    if acc is None or acc.native is None:
        return 0.0
    n = acc.native
    return (
        float(n.get("seconds") or 0) + (n.get("millis") or 0) / 1e3 + (n.get("micros") or 0) / 1e6
    )


def load_pem_certs(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ProofError(f"not a PEM certificate file: {exc}") from exc


def load_roots(path: Path | None) -> list[x509.Certificate]:
    if path is None:
        return []
    try:
        return load_pem_certs(path.read_bytes())
    except OSError as exc:
        raise ProofError(f"cannot read TSA roots {path}: {exc}") from exc


# ---- client --------------------------------------------------------------------------------


def build_request(digest: bytes, nonce: int, hash_alg: str = "sha256") -> bytes:
    req = tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": tsp.MessageImprint(
                {
                    "hash_algorithm": algos.DigestAlgorithm({"algorithm": hash_alg}),
                    "hashed_message": digest,
                }
            ),
            "nonce": core.Integer(nonce),
            "cert_req": True,
        }
    )
    der: bytes = req.dump()  # asn1crypto is untyped
    return der


def parse_reply(body: bytes) -> bytes:
    """The DER TimeStampToken of a granted reply; TsaRejected otherwise."""
    try:
        resp = tsp.TimeStampResp.load(body)
        status = resp["status"]["status"].native
    except (ValueError, TypeError) as exc:
        raise TsaRejected(f"not an RFC 3161 reply: {exc}", permanent=False) from exc
    if status not in ("granted", "granted_with_mods"):
        info = resp["status"]["fail_info"].native if resp["status"]["fail_info"] else None
        text = resp["status"]["status_string"].native if resp["status"]["status_string"] else None
        fails = set(info or ())
        raise TsaRejected(
            f"TSA refused: {status} {sorted(fails) or ''} {text or ''}".strip(),
            permanent=bool(fails & _PERMANENT_FAILURES),
        )
    token = resp["time_stamp_token"]
    if not isinstance(token, cms.ContentInfo) or token.native is None:
        raise TsaRejected("granted reply without a token", permanent=False)
    der: bytes = token.dump()
    return der


def request_token(url: str, digest: bytes, *, timeout: float = 10.0) -> tuple[bytes, int]:
    """POST a TimeStampReq for ``digest`` (SHA-256) to ``url``; return (token DER, nonce)."""
    nonce = secrets.randbits(63)
    req = urllib.request.Request(
        url,
        data=build_request(digest, nonce),
        headers={"Content-Type": CONTENT_TYPE_QUERY, "Accept": CONTENT_TYPE_REPLY},
        method="POST",
    )
    host = urllib.parse.urlsplit(url).hostname or ""
    # Honour http(s)_proxy for real TSAs, but never send loopback traffic through a proxy.
    proxies: dict[str, str] | None = {} if host in {"127.0.0.1", "localhost", "::1"} else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
    try:
        with opener.open(req, timeout=timeout) as resp:
            body = resp.read(MAX_REPLY_BYTES + 1)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ProofError(f"TSA {url} unreachable: {exc}") from exc
    if len(body) > MAX_REPLY_BYTES:
        raise TsaRejected(f"TSA {url} reply too large", permanent=False)
    return parse_reply(body), nonce


# ---- verification --------------------------------------------------------------------------


def _signer_cert(sd: cms.SignedData, sid: cms.SignerIdentifier) -> x509.Certificate:
    for choice in sd["certificates"] or []:
        if choice.name != "certificate":
            continue
        c = choice.chosen
        if sid.name == "issuer_and_serial_number":
            want = sid.chosen
            if c.issuer == want["issuer"] and c.serial_number == want["serial_number"].native:
                return x509.load_der_x509_certificate(c.dump())
        elif c.key_identifier == sid.chosen.native:
            return x509.load_der_x509_certificate(c.dump())
    raise TokenInvalid("the token does not carry the TSA's certificate (request certReq)")


def _verify_sig(
    cert: x509.Certificate, si: cms.SignerInfo, data: bytes, hash_alg: hashes.HashAlgorithm
) -> None:
    sig = si["signature"].native
    algo = si["signature_algorithm"]
    name = algo.signature_algo
    pub = cert.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey) and name == "rsassa_pkcs1v15":
            pub.verify(sig, data, padding.PKCS1v15(), hash_alg)
        elif isinstance(pub, rsa.RSAPublicKey) and name == "rsassa_pss":
            params = algo["parameters"]
            mgf_hash = _HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]
            pss = padding.PSS(padding.MGF1(mgf_hash), params["salt_length"].native)
            pub.verify(sig, data, pss, _HASHES[params["hash_algorithm"]["algorithm"].native])
        elif isinstance(pub, ec.EllipticCurvePublicKey) and name == "ecdsa":
            pub.verify(sig, data, ec.ECDSA(hash_alg))
        elif isinstance(pub, ed25519.Ed25519PublicKey) and name == "ed25519":
            pub.verify(sig, data)
        else:
            raise TokenInvalid(f"unsupported TSA signature {name} with {type(pub).__name__}")
    except InvalidSignature as exc:
        raise TokenInvalid("the TSA's signature over the token does not verify") from exc


def _check_tsa_chain(
    signer: x509.Certificate,
    pool: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime,
) -> None:
    """RFC 5280 path validation by ``cryptography`` (key usage, path length, validity at the
    token's time) and RFC 3161 2.3: the TSA certificate's only EKU is a critical timeStamping."""
    try:
        ext = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound as exc:
        raise TokenInvalid(
            "TSA certificate has no extended key usage (needs timeStamping)"
        ) from exc
    if ExtendedKeyUsageOID.TIME_STAMPING not in ext.value or not ext.critical:
        raise TokenInvalid("TSA certificate lacks a critical timeStamping extended key usage")
    if not roots:
        return
    try:
        verify_chain(
            signer,
            roots,
            at,
            eku=ExtendedKeyUsageOID.TIME_STAMPING,
            critical_eku=True,
            intermediates=[c for c in pool if c != signer],
        )
    except ChainError as exc:
        raise TokenInvalid(
            f"TSA certificate {signer.subject.rfc4514_string()} does not chain to a trusted "
            f"TSA root: {exc}"
        ) from exc


def verify_token(
    token_der: bytes,
    digest: bytes | None,
    roots: Sequence[x509.Certificate] = (),
    *,
    nonce: int | None = None,
) -> TokenInfo:
    """Check a TimeStampToken: structure, imprint == ``digest``, signature, ESS cert, chain.

    ``digest`` None skips the imprint check (to describe a token). Raises TokenInvalid with the
    first failed check. With no ``roots`` the chain is not checked (``chain_checked`` False).
    """
    try:
        ci = cms.ContentInfo.load(token_der)
        if ci["content_type"].native != "signed_data":
            raise TokenInvalid("not a CMS SignedData token")
        sd = ci["content"]
        encap = sd["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise TokenInvalid("the token's content is not a TSTInfo")
        tst_der = encap["content"].contents
        tst = tsp.TSTInfo.load(tst_der)
        imprint = tst["message_imprint"]
        hash_name = imprint["hash_algorithm"]["algorithm"].native
        hashed = imprint["hashed_message"].native
        gen_time = tst["gen_time"].native
        serial = tst["serial_number"].native
        policy = tst["policy"].dotted
        tst_nonce = tst["nonce"].native
        accuracy = _accuracy_s(tst["accuracy"])
        signer_infos = sd["signer_infos"]
        if len(signer_infos) != 1:
            raise TokenInvalid("a timestamp token must have exactly one signer")
        si = signer_infos[0]
        pool = [
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in (sd["certificates"] or [])
            if c.name == "certificate"
        ]
        signer = _signer_cert(sd, si["sid"])
    except TokenInvalid:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TokenInvalid(f"malformed timestamp token: {exc}") from exc
    if digest is not None and (hash_name != "sha256" or hashed != digest):
        raise TokenInvalid(
            f"the token timestamps other data: imprint {hash_name}:{hashed.hex()[:16]}..., "
            f"expected sha256:{digest.hex()[:16]}..."
        )
    if nonce is not None and tst_nonce != nonce:
        raise TokenInvalid("the reply's nonce does not match the request's")
    try:
        _check_signed(tst_der, si, signer, pool, roots, gen_time)
    # a token is anyone's bytes (a TSA of the key holder's own): one whose signed attributes
    # hold an empty set, an ESS naming no certificate or a key of no known kind is invalid,
    # never a crash (`packcam verify` stopped with an IndexError; openssl, in verify.py,
    # refused it: tsa-invalid)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, UnsupportedAlgorithm) as e:
        raise TokenInvalid(f"malformed timestamp token: {e!r}") from e
    return TokenInfo(
        gen_time=gen_time.astimezone(UTC),
        serial=serial,
        policy=policy,
        hash_alg=hash_name,
        imprint=hashed,
        nonce=tst_nonce,
        tsa_subject=signer.subject.rfc4514_string(),
        signer_cert=signer,
        chain_checked=bool(roots),
        accuracy_s=accuracy,
    )


def _check_signed(
    tst_der: bytes,
    si: cms.SignerInfo,
    signer: x509.Certificate,
    pool: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    gen_time: datetime,
) -> None:
    """The token's signed attributes (content type, message digest, ESS certificate id), its
    signature and its TSA's chain to ``roots``; TokenInvalid for the first that fails."""
    si_hash = si["digest_algorithm"]["algorithm"].native
    attrs = si["signed_attrs"]
    if si_hash not in _HASHES:
        raise TokenInvalid(f"unsupported digest algorithm {si_hash}")
    h = _HASHES[si_hash]
    if not attrs:
        raise TokenInvalid("the token has no signed attributes")
    found: dict[str, Any] = {}  # asn1crypto values (untyped)
    for a in attrs:
        found[a["type"].native] = a["values"][0]
    if found.get("content_type") is None or found["content_type"].native != "tst_info":
        raise TokenInvalid("signed content-type attribute is not TSTInfo")
    hasher = hashes.Hash(h)
    hasher.update(tst_der)
    if found.get("message_digest") is None or found["message_digest"].native != hasher.finalize():
        raise TokenInvalid("the signed message digest does not match the TSTInfo")
    ess = found.get("signing_certificate_v2") or found.get("signing_certificate")
    if ess is None:  # RFC 3161 2.4.1 (RFC 5816): it names the TSA certificate that signs
        raise TokenInvalid(
            "the token has no ESS signing-certificate attribute (RFC 3161 requires one; "
            "openssl, which verify.py runs, refuses such a token)"
        )
    cert_id = ess["certs"][0]
    alg = cert_id["hash_algorithm"]["algorithm"].native if "hash_algorithm" in cert_id else "sha1"
    der = signer.public_bytes(Encoding.DER)
    if hashlib.new(alg, der).digest() != cert_id["cert_hash"].native:
        raise TokenInvalid("the ESS signing-certificate attribute names another certificate")
    signed_attrs_der = b"\x31" + attrs.dump()[1:]  # signed over as a SET OF, not [0] IMPLICIT
    _verify_sig(signer, si, signed_attrs_der, h)
    _check_tsa_chain(signer, pool, roots, gen_time)


# ---- the offline queue ---------------------------------------------------------------------


class TsaQueue:
    """Fetches the tokens queued in the proof log, retrying with backoff while a TSA is down.

    ``process_due`` does one pass and may be called from any thread; ``TsaWorker`` calls it in
    the background. A token is verified (imprint, nonce, signature, and chain when roots are
    configured) before it is stored.
    """

    def __init__(
        self,
        log_: ProofLog,
        *,
        roots: Sequence[x509.Certificate] = (),
        timeout_s: float = 10.0,
        retry_s: float = 60.0,
    ) -> None:
        self.log = log_
        self.roots = list(roots)
        self.timeout_s = timeout_s
        self.retry_s = retry_s

    def process_due(self, now: datetime | None = None) -> tuple[int, int]:
        """Try every due request once; return (granted, still pending or failed)."""
        granted = failed = 0
        down: set[str] = set()
        for row in self.log.due_timestamps(now):
            delay = min(self.retry_s * (2 ** min(row.attempts, 20)), MAX_RETRY_S)
            if row.tsa_url in down:  # one unreachable TSA: don't wait out its timeout per row
                self.log.retry_later(row.id, "TSA unreachable", delay)
                failed += 1
                continue
            digest = bytes.fromhex(row.subject_sha256)
            try:
                token, nonce = request_token(row.tsa_url, digest, timeout=self.timeout_s)
                info = verify_token(token, digest, self.roots, nonce=nonce)
            except TsaRejected as exc:
                log.warning("TSA %s: %s", row.tsa_url, exc)
                self.log.retry_later(row.id, str(exc), delay, give_up=exc.permanent)
                failed += 1
                continue
            except TokenInvalid as exc:
                log.warning("TSA %s sent a bad token: %s", row.tsa_url, exc)
                self.log.retry_later(row.id, f"bad token: {exc}", delay)
                failed += 1
                continue
            except ProofError as exc:
                log.info("%s; retrying in %.0f s", exc, delay)
                down.add(row.tsa_url)
                self.log.retry_later(row.id, str(exc), delay)
                failed += 1
                continue
            self.log.store_token(row.id, token, info.gen_time)
            granted += 1
            log.debug(
                "timestamped %s %s at %s", row.subject, row.subject_sha256[:12], info.gen_time
            )
        return granted, failed


class TsaWorker:
    """Background thread running ``TsaQueue.process_due``; ``wake()`` after queueing, ``stop()``.
    ``before_pass`` runs on its thread before each pass (queueing requests made in memory by
    a thread that must not write the log: the capture thread's start statements)."""

    def __init__(
        self,
        queue: TsaQueue,
        *,
        poll_s: float = 30.0,
        before_pass: Callable[[], None] | None = None,
    ) -> None:
        self.queue = queue
        self.poll_s = poll_s
        self.before_pass = before_pass
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tsa-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self.before_pass is not None:
                    self.before_pass()
                self.queue.process_due()
            except Exception:  # the loop must survive one bad pass
                log.exception("timestamp pass failed")
            self._wake.wait(self.poll_s)
