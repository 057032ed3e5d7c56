"""Anchors (pins, fingerprints, trust files) and RFC 5280 path validation by cryptography."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from station.proof import ProofError
from station.proof.ca import cert_fingerprint, pem
from station.proof.trust import (
    ChainError,
    build_anchors,
    default_trust_path,
    normalise_fingerprint,
    verify_chain,
)

TS = ExtendedKeyUsageOID.TIME_STAMPING
NOW = datetime.now(UTC)


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool,
    pathlen: int | None = None,
    eku: list | None = None,
    eku_critical: bool = True,
    digital_signature: bool = True,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    iname, ikey = issuer or (subject, key)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(iname)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen if ca else None), True)
        .add_extension(
            x509.KeyUsage(digital_signature, False, False, False, False, ca, ca, False, False),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ikey.public_key()), False)
    )
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), eku_critical)
    return b.sign(ikey, hashes.SHA256())


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def root() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    k = _key()
    return _cert("Root", k, ca=True, pathlen=0), k


def test_a_proper_tsa_certificate_chains(root) -> None:
    rc, rk = root
    leaf = _cert("TSA", _key(), (rc.subject, rk), ca=False, eku=[TS])
    assert verify_chain(leaf, [rc], NOW, eku=TS, critical_eku=True)[-1] == rc


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"eku": [ExtendedKeyUsageOID.CODE_SIGNING]}, "no timeStamping EKU"),
        ({"eku": [TS], "eku_critical": False}, "EKU not critical"),
        ({"eku": None}, "no EKU at all"),
        ({"eku": [TS], "digital_signature": False}, "key usage without digitalSignature"),
    ],
)
def test_tsa_leaf_profile_is_enforced(root, kwargs: dict, why: str) -> None:
    rc, rk = root
    leaf = _cert("TSA", _key(), (rc.subject, rk), ca=False, **kwargs)
    with pytest.raises(ChainError):
        verify_chain(leaf, [rc], NOW, eku=TS, critical_eku=True)


def test_path_length_and_ca_flag_are_enforced(root) -> None:
    rc, rk = root
    ik = _key()
    # an intermediate under a root with pathlen 0: one CA too many
    inter = _cert("Intermediate", ik, (rc.subject, rk), ca=True, pathlen=0)
    leaf = _cert("TSA", _key(), (inter.subject, ik), ca=False, eku=[TS])
    with pytest.raises(ChainError):
        verify_chain(leaf, [rc], NOW, eku=TS, critical_eku=True, intermediates=[inter])
    # a leaf (CA:FALSE) used to issue another certificate
    fake_ca = _cert("Not a CA", ik, (rc.subject, rk), ca=False, eku=[TS])
    leaf2 = _cert("TSA", _key(), (fake_ca.subject, ik), ca=False, eku=[TS])
    with pytest.raises(ChainError):
        verify_chain(leaf2, [rc], NOW, eku=TS, critical_eku=True, intermediates=[fake_ca])
    # outside its validity
    good = _cert("TSA", _key(), (rc.subject, rk), ca=False, eku=[TS])
    with pytest.raises(ChainError):
        verify_chain(good, [rc], NOW + timedelta(days=60), eku=TS, critical_eku=True)


def test_fingerprints_in_every_usual_spelling(root) -> None:
    rc, _ = root
    fp = cert_fingerprint(rc)
    hexpart = fp[7:]
    colons = ":".join(hexpart[i : i + 2].upper() for i in range(0, 64, 2))
    for text in (fp, hexpart, colons, f"sha256 Fingerprint={colons}", f"  {fp.lower()} "):
        assert normalise_fingerprint(text) == fp
    assert normalise_fingerprint("ca.pem") is None and normalise_fingerprint("ab" * 31) is None


def test_trust_file_and_default_location(root, tmp_path: Path) -> None:
    rc, _ = root
    (tmp_path / "root.pem").write_bytes(pem(rc))
    trust = tmp_path / "trust"
    trust.write_text(f"# pinned\nca {cert_fingerprint(rc)}\ntsa root.pem  # relative\n")
    a = build_anchors(trust_file=str(trust))
    assert cert_fingerprint(rc) in a.ca_fps and a.tsa == (rc,)
    assert a.trusted_ca([rc]) == [rc] and a.trusted_ca([]) == []
    env = {"XDG_CONFIG_HOME": str(tmp_path / "x"), "HOME": "/nonexistent"}
    assert default_trust_path(env) == tmp_path / "x/packcam/trust"
    assert not build_anchors(env=env).has_ca  # no file there: nothing trusted
    assert default_trust_path({"HOME": "/home/u"}) == Path("/home/u/.config/packcam/trust")
    trust.write_text("company SHA256:00\n")
    with pytest.raises(ProofError, match="expected 'ca"):
        build_anchors(trust_file=str(trust))
    with pytest.raises(ProofError, match="neither a SHA-256 fingerprint nor"):
        build_anchors(["/no/such/ca.pem"], use_default=False)
