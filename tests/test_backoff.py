"""The one back-off helper."""

from __future__ import annotations

import pytest

from station.runtime.backoff import Backoff


def test_doubles_up_to_the_maximum_and_starts_over_after_reset() -> None:
    b = Backoff(0.5, 10.0)
    assert [b.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.failures == 7
    b.reset()
    assert b.failures == 0 and b.next() == 0.5


@pytest.mark.parametrize(("first", "maximum", "factor"), [(0, 1, 2), (2, 1, 2), (1, 2, 0.5)])
def test_nonsense_is_refused(first: float, maximum: float, factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(first, maximum, factor)
