"""Where the proof files of a station live: config paths, or defaults under <data_dir>/proof/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from station.config import Config


def _pick(value: str, default: Path) -> Path:
    return Path(value).expanduser() if value else default


@dataclass(frozen=True)
class ProofPaths:
    """Resolved file locations. Private keys are 0600 files; everything else is public."""

    dir: Path
    key: Path  # Ed25519 station key (private)
    key_cert: Path  # company CA's X.509 certificate for the Ed25519 key
    c2pa_cert: Path  # ES256 leaf + chain (PEM), for C2PA
    c2pa_key: Path  # its private key
    ca_cert: Path  # company root CA certificate (public trust anchor)
    tsa_ca: Path | None  # roots that TSA tokens must chain to
    ca_dir: Path  # default home of the company CA when `packcam ca init` runs here

    @classmethod
    def from_config(cls, cfg: Config) -> ProofPaths:
        d = cfg.station.data_dir / "proof"
        p = cfg.proof
        return cls(
            dir=d,
            key=_pick(p.key_path, d / "station-key.pem"),
            key_cert=_pick(p.key_cert_path, d / "station-key.crt"),
            c2pa_cert=_pick(p.c2pa_cert_path, d / "station-c2pa-chain.pem"),
            c2pa_key=_pick(p.c2pa_key_path, d / "station-c2pa-key.pem"),
            ca_cert=_pick(p.ca_cert_path, d / "company-ca.crt"),
            tsa_ca=Path(p.tsa_ca_path).expanduser() if p.tsa_ca_path else None,
            ca_dir=d / "ca",
        )
