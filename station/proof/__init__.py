"""Proof a stranger can check: signed manifests, a Merkle log, RFC 3161 time, C2PA, bundles."""

from station.errors import StationError

PROOF_VERSION = 1


class ProofError(StationError):
    """A key, certificate, log or bundle operation failed (not: a verification said "no")."""
