"""Where proof files live: secrets in <data>/proof/ (0700), public ones in <data>/proof-public/."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from station.config import Config
from station.proof import ProofError

log = logging.getLogger(__name__)

PRIVATE_DIR = "proof"
PUBLIC_DIR = "proof-public"


def _pick(value: str, default: Path) -> Path:
    return Path(value).expanduser() if value else default


@dataclass(frozen=True)
class ProofPaths:
    """Resolved file locations. Private keys are 0600 files in ``dir`` (mode 0700).

    Everything public (the station's public key, certificates, the CA certificate) defaults to
    ``public_dir``, so a process that must never read the private keys (the web site, run by
    another user with ``InaccessiblePaths=<data>/proof``) can still verify and export.
    """

    dir: Path
    key: Path  # Ed25519 station key (private)
    key_cert: Path  # company CA's X.509 certificate for the Ed25519 key
    c2pa_cert: Path  # ES256 leaf + chain (PEM), for C2PA
    c2pa_key: Path  # its private key
    ca_cert: Path  # company root CA certificate (public trust anchor)
    tsa_ca: Path | None  # roots that TSA tokens must chain to
    ca_dir: Path  # default home of the company CA when `packcam ca init` runs here
    public_dir: Path = Path(PUBLIC_DIR)
    public_key: Path = Path(PUBLIC_DIR, "station-key.pub.pem")  # the station key's public half

    @classmethod
    def from_config(cls, cfg: Config) -> ProofPaths:
        d = cfg.station.data_dir / PRIVATE_DIR
        pub = cfg.station.data_dir / PUBLIC_DIR
        p = cfg.proof
        return cls(
            dir=d,
            key=_pick(p.key_path, d / "station-key.pem"),
            key_cert=_pick(p.key_cert_path, pub / "station-key.crt"),
            c2pa_cert=_pick(p.c2pa_cert_path, pub / "station-c2pa-chain.pem"),
            c2pa_key=_pick(p.c2pa_key_path, d / "station-c2pa-key.pem"),
            ca_cert=_pick(p.ca_cert_path, pub / "company-ca.crt"),
            tsa_ca=Path(p.tsa_ca_path).expanduser() if p.tsa_ca_path else None,
            ca_dir=d / "ca",
            public_dir=pub,
            public_key=pub / "station-key.pub.pem",
        )

    def ensure_dirs(self) -> None:
        """Create ``dir`` with mode 0700 and ``public_dir`` with 0755.

        A ``dir`` that group or others could enter is tightened to 0700 with a warning: it
        holds private keys. One owned by another user is refused (ProofError): its owner could
        swap in a key they know. (Directories named in the config are the admin's business.)
        """

        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = self.dir.stat()
        euid = os.geteuid()
        if st.st_uid != euid and euid != 0:
            raise ProofError(
                f"{self.dir} belongs to uid {st.st_uid}, not to this user (uid {euid}): "
                "the private key directory must be the station's own"
            )
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.warning("%s had mode %o; setting 0700 (it holds private keys)", self.dir,
                        stat.S_IMODE(st.st_mode))  # fmt: skip
            self.dir.chmod(0o700)
        if not self.public_dir.is_dir():
            self.public_dir.mkdir(parents=True, exist_ok=True)
            self.public_dir.chmod(0o755)
