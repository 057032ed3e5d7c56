"""The station's Ed25519 signing key: created on first run (mode 0600), loaded, fingerprinted."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.proof import ProofError
from station.store.files import fsync_dir, remove_stale_temps

log = logging.getLogger(__name__)

SIG_ALG = "Ed25519"


def fingerprint(public: Ed25519PublicKey) -> str:
    """``SHA256:<hex>`` of the raw 32-byte public key: what people compare by eye or by phone."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ProofError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ProofError(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key


def verify_signature(public: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def write_private(path: Path, pem: bytes, *, replace: bool = False) -> None:
    """Create ``path`` with mode 0600 (never overwriting: FileExistsError) holding ``pem``,
    whole or not at all; a new folder is 0700. ``replace``: put it over an existing key.

    Written and fsynced under a temp name, then hard-linked into place (renamed over the old
    key with ``replace``): a power cut or a full disk mid-write leaves no empty or torn key
    file that would stop the station at its next start, and a key another process created
    meanwhile is never replaced.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_stale_temps(path, "new")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_public(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with a world-readable (0644) file, fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, "new")  # left by a station killed while publishing
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        os.fchmod(fd, 0o644)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_public(path: Path) -> bytes | None:
    """The file's bytes, or None when it is missing or this user may not read it."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None


def station_public_key(public_path: Path, key_path: Path) -> Ed25519PublicKey:
    """The station's public key, read without touching the private key when possible.

    Looks at ``public_path`` (what the station publishes), then ``<key>.pub`` (written by
    ``packcam keys init`` before there was a public folder), and only then derives it from the
    private key: the web site runs as a user that cannot read that, and does not need to.
    """
    for cand in (public_path, key_path.with_name(key_path.name + ".pub")):
        data = _read_public(cand)
        if data is not None:
            return load_public_pem(data)
    try:
        return StationKey.load(key_path).public
    except ProofError as exc:
        raise ProofError(f"no station public key at {public_path}, and {exc}") from exc


def check_private_mode(path: Path) -> None:
    """Tighten a private key file readable by group or others back to 0600, with a warning."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("private key %s had mode %o; setting 0600", path, mode)
        path.chmod(0o600)


@dataclass(frozen=True)
class StationKey:
    """An Ed25519 key that signs manifests and checkpoints. The private half never leaves here."""

    private: Ed25519PrivateKey
    path: Path | None = None

    @classmethod
    def generate(cls) -> StationKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> StationKey:
        try:
            check_private_mode(path)
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise ProofError(f"station key not found: {path} (run `packcam keys init`)") from exc
        except (OSError, ValueError, TypeError) as exc:
            raise ProofError(f"cannot load station key {path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ProofError(f"{path}: expected an Ed25519 key, got {type(key).__name__}")
        return cls(key, path)

    @classmethod
    def load_or_create(
        cls, path: Path, *, public_path: Path | None = None
    ) -> tuple[StationKey, bool]:
        """Load the key at ``path``, creating it first when missing. Returns (key, created).

        With ``public_path``, the public half is (re)published there (0644) when it is missing
        or differs, for processes that may not read the private key.
        """
        key, created = cls._load_or_create(path)
        if public_path is not None and _read_public(public_path) != key.public_pem():
            write_public(public_path, key.public_pem())
            log.info("published the station's public key to %s", public_path)
        return key, created

    @classmethod
    def _load_or_create(cls, path: Path) -> tuple[StationKey, bool]:
        if path.exists():
            return cls.load(path), False
        key = cls.generate()
        pem = key.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            write_private(path, pem)
        except FileExistsError:  # another process won the race: use its key
            return cls.load(path), False
        except OSError as exc:
            raise ProofError(f"cannot create station key {path}: {exc}") from exc
        log.info("created station key %s (%s)", path, key.fingerprint)
        return cls(key.private, path), True

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def public_pem(self) -> bytes:
        return public_pem(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def sign_record(self, data: bytes) -> tuple[bytes, str]:
        """(signature, this key's fingerprint): what a deletion record carries (retention's
        ``Signer``)."""
        return self.sign(data), self.fingerprint
