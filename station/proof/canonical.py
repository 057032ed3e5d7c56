"""Canonical JSON (RFC 8785 style): sorted keys, no whitespace, UTF-8, ES6 number format."""

from __future__ import annotations

from typing import Any

# one copy: the verifier shipped inside evidence bundles runs alone (no packcam) and must
# read manifests exactly as the station writes them, so it holds the encoder and this uses it
from station.proof.standalone_verify import canonical


def canonical_json(value: Any) -> bytes:
    """The one byte string that ``value`` signs and hashes as (UTF-8, no whitespace)."""
    return canonical(value).encode("utf-8")
