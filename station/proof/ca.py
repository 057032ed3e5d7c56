"""Company CA and station X.509 certificates: ES256 for C2PA, one for the Ed25519 key."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from station.proof import ProofError
from station.proof.keys import check_private_mode, write_private, write_public

log = logging.getLogger(__name__)

CA_KEY = "ca.key"
CA_CERT = "ca.crt"
# id-kp-documentSigning (RFC 9336); C2PA also accepts id-kp-emailProtection.
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")


def cert_fingerprint(cert: x509.Certificate) -> str:
    return "SHA256:" + cert.fingerprint(hashes.SHA256()).hex()


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_public(path: Path, data: bytes) -> None:
    write_public(path, data)  # 0644 whatever the umask: the web service reads certificates


def _key_usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class CompanyCa:
    """The company's root: signs station certificates. Keep ``ca.key`` off the stations."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    dir: Path

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(self.cert)

    @classmethod
    def create(cls, ca_dir: Path, name: str, *, days: int = 3650) -> CompanyCa:
        if (ca_dir / CA_KEY).exists():
            raise ProofError(f"a CA already exists in {ca_dir}; refusing to overwrite it")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            ]
        )
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(sign=True, ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_private(ca_dir / CA_KEY, _private_pem(key))
        _write_public(ca_dir / CA_CERT, pem(cert))
        log.info("created company CA %r in %s (%s)", name, ca_dir, cert_fingerprint(cert))
        return cls(cert, key, ca_dir)

    @classmethod
    def load(cls, ca_dir: Path) -> CompanyCa:
        try:
            check_private_mode(ca_dir / CA_KEY)
            key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), None)
            cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
        except FileNotFoundError as exc:
            raise ProofError(f"no company CA in {ca_dir} (run `packcam ca init`)") from exc
        except (OSError, ValueError, TypeError) as exc:
            raise ProofError(f"cannot load the company CA from {ca_dir}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ProofError(f"{ca_dir / CA_KEY}: expected an EC key")
        return cls(cert, key, ca_dir)

    def _leaf(
        self,
        subject: x509.Name,
        public: ec.EllipticCurvePublicKey | Ed25519PublicKey,
        ekus: list[ObjectIdentifier],
        days: int,
    ) -> x509.Certificate:
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(min(now + timedelta(days=days), self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(sign=True, ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue_station(
        self, station: str, station_key: Ed25519PublicKey, *, days: int = 825
    ) -> StationCerts:
        """A fresh ES256 key + certificate for C2PA and a certificate for the Ed25519 key."""
        org = self.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, station)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(org[0].value)))
        subject = x509.Name(attrs)
        c2pa_key = ec.generate_private_key(ec.SECP256R1())
        c2pa_cert = self._leaf(
            subject,
            c2pa_key.public_key(),
            [ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING],
            days,
        )
        key_cert = self._leaf(subject, station_key, [DOCUMENT_SIGNING], days)
        return StationCerts(
            c2pa_key_pem=_private_pem(c2pa_key),
            c2pa_chain_pem=pem(c2pa_cert) + pem(self.cert),
            key_cert_pem=pem(key_cert),
            ca_cert_pem=pem(self.cert),
        )


@dataclass(frozen=True)
class StationCerts:
    c2pa_key_pem: bytes
    c2pa_chain_pem: bytes  # leaf first, then the root
    key_cert_pem: bytes  # the CA's certificate for the station's Ed25519 key
    ca_cert_pem: bytes

    def install(self, *, c2pa_key: Path, c2pa_cert: Path, key_cert: Path, ca_cert: Path) -> None:
        """Write the files (the private key 0600), replacing an older issue atomically."""
        c2pa_key.parent.mkdir(parents=True, exist_ok=True)
        write_private(c2pa_key, self.c2pa_key_pem, replace=True)
        _write_public(c2pa_cert, self.c2pa_chain_pem)
        _write_public(key_cert, self.key_cert_pem)
        _write_public(ca_cert, self.ca_cert_pem)


def check_issued_by(
    cert: x509.Certificate, root: x509.Certificate, at: datetime | None = None
) -> str | None:
    """None when ``root`` signed ``cert`` and both are valid at ``at``; else the reason."""
    at = at or datetime.now(UTC)
    if cert.issuer != root.subject:
        return (
            f"certificate issued by {cert.issuer.rfc4514_string()!r}, "
            f"not by the trusted CA {root.subject.rfc4514_string()!r}"
        )
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return (
            "certificate names the trusted CA as issuer but its signature does not verify "
            f"(a foreign CA of the same name; trusted CA {cert_fingerprint(root)})"
        )
    for c in (cert, root):
        if not c.not_valid_before_utc <= at <= c.not_valid_after_utc:
            return f"certificate {c.subject.rfc4514_string()!r} not valid at {at.isoformat()}"
    return None


def public_key_sha256(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()
