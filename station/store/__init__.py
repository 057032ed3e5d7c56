"""The station's index database: one opener (store/index.py), one owner per table."""
