"""The station's small exception hierarchy; mapped to exit codes / HTTP only at the edges."""

# The `packcam` command's exit codes (the CLI turns the exceptions below into them).
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3


class StationError(Exception):
    """Base class for every error packcam raises on purpose."""


class ConfigError(StationError):
    """The configuration file is missing, malformed or has invalid / unknown keys."""


class CameraError(StationError):
    """A frame source could not be opened or stopped delivering frames."""


class ScannerError(StationError):
    """A scan source (keyboard wedge, pedal) could not be opened or failed."""


class RecordingError(StationError):
    """A clip could not be written, finished or moved into place."""


class LedgerError(StationError):
    """The SQLite index could not be opened, migrated or written."""


class RejectedCode(StationError):
    """A scanned code was refused (too long, binary, control characters, empty)."""
