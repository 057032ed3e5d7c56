"""The central site's errors, in their own module: the schema and the index both raise them."""

from __future__ import annotations

from station.errors import StationError


class CentralError(StationError):
    """The central index cannot be reached, migrated or written, or a request was refused."""


class Unavailable(CentralError):
    """PostgreSQL is down or unreachable (clients retry later)."""


__all__ = ["CentralError", "Unavailable"]
