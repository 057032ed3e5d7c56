"""Canonical JSON (RFC 8785 style): sorted keys, no whitespace, UTF-8, ES6 number format."""

from __future__ import annotations

import json
import math
from typing import Any


def _number(x: int | float) -> str:
    if isinstance(x, bool):  # bool is an int subclass; handled by the caller
        raise TypeError("bool is not a number")
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        raise ValueError(f"{x!r} cannot be represented in JSON")
    if x == 0:
        return "0"  # RFC 8785: -0 serialises as 0
    if x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    # repr() gives the shortest round-tripping digits; re-lay them out as ECMAScript does.
    sign = "-" if x < 0 else ""
    mant, _, exp_s = repr(abs(x)).partition("e")
    int_part, _, frac_part = mant.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # n: position of the decimal point relative to the start of ``digits`` (ECMA-262 7.1.12.1)
    lead_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    n = len(int_part) - lead_zeros + (int(exp_s) if exp_s else 0)
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    es = f"e+{e}" if e >= 0 else f"e-{-e}"
    return sign + (digits if k == 1 else digits[0] + "." + digits[1:]) + es


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int | float):
        out.append(_number(value))
    elif isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("JSON object keys must be strings")
        out.append("{")
        # RFC 8785 sorts by UTF-16 code units, not code points.
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot canonicalise {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """The one byte string that ``value`` signs and hashes as (UTF-8, no whitespace)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")
