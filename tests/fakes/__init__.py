"""Stand-ins for hardware libraries that cannot exist here (picamera2, python-evdev)."""
