"""Keeping the station up: systemd notify, clock, priority, retries, doctor, faults."""
