"""Frames and scans in: cameras, scanners, barcodes, the change gate, hardware adapters."""
