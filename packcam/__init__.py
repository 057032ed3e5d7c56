"""The composition layer: the `packcam` command; the only code that knows every package."""
