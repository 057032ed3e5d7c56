"""packcam station: turns a barcode scan into one hashed, indexed H.264 clip per order."""

__version__ = "0.1.0"
