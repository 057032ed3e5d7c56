"""The only modules that import picamera2, evdev and gpiozero; each import is guarded."""
