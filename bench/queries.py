"""Search queries as people type them, for the search benchmarks (bench/web.py, bench/fleet.py)."""

from __future__ import annotations

import random
from collections.abc import Callable


def search_queries(
    rows: int,
    n: int,
    *,
    seed: int,
    order: Callable[[int], str],
    waybill: Callable[[int], str],
    first: int = 0,
) -> dict[str, list[str]]:
    """``n`` queries of each kind over rows ``first`` .. ``first + rows - 1`` (``order(i)``,
    ``waybill(i)`` name row i): 2-, 3- and 4-character pieces of order IDs and waybills from
    anywhere in them (any case), an order's last 5 digits, a waybill's digits without its
    carrier letters, and misses. The same ``seed`` gives the same queries."""
    rnd = random.Random(seed)

    def row() -> int:
        return first + rnd.randrange(rows)

    def piece(k: int) -> str:
        i = row()
        text = rnd.choice([order(i), waybill(i)])
        at = rnd.randrange(len(text) - k + 1)
        return rnd.choice([str.lower, str.upper])(text[at : at + k])

    return {
        "2 characters": [piece(2) for _ in range(n)],
        "3 characters": [piece(3) for _ in range(n)],
        "4 characters": [piece(4) for _ in range(n)],
        "order suffix (last 5 digits)": [order(row())[-5:] for _ in range(n)],
        "waybill digits only": ["".join(filter(str.isdigit, waybill(row()))) for _ in range(n)],
        "no match": [rnd.choice(["zq", "zqx", "qq-9", "xx99"]) for _ in range(n)],
    }
