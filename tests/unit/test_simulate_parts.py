"""The pure parts of `apparel simulate`: the pacing schedule, the report's arithmetic, the draw of an order and
the checks of its arguments. The run against PostgreSQL is tests/integration/test_simulate.py (a module name
of its own: pytest imports test modules by their base name)."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime

import numpy as np
import pytest

from apparel.errors import ConfigError
from apparel.runtime import fraction, positive
from apparel.simulate import StoreSample, figures, pace, simulate, truncated


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_pace_keeps_the_schedule_without_drift():
    clock = FakeClock()
    started: list[float] = []
    cost = {2: 0.35}  # tick 2 takes 0.35 s at 10/s: ticks 3 and 4 run late, tick 5 is on time again

    def action(i):
        started.append(clock.now)
        clock.now += cost.get(i, 0.01)

    pace(8, 10.0, action, clock=clock, sleep=clock.sleep)
    assert started == pytest.approx([0.0, 0.1, 0.2, 0.55, 0.56, 0.57, 0.6, 0.7])
    assert clock.now == pytest.approx(0.8)  # the last tick's slot is waited out: 8 ticks at 10/s last 0.8 s
    assert all(s > 0 for s in clock.sleeps)


def test_pace_that_cannot_keep_up_never_sleeps():
    clock = FakeClock()

    def action(i):
        clock.now += 0.5

    pace(4, 10.0, action, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [] and clock.now == pytest.approx(2.0)


def test_figures_sum_lines_into_their_orders_minutes():
    orders = {10: datetime(2026, 1, 1, 9, 0, 59, 999000), 11: datetime(2026, 1, 1, 9, 1, 0),
              12: datetime(2026, 1, 1, 9, 1, 30), 13: datetime(2026, 1, 1, 9, 3, 5)}
    lines = {(10, 100): (2, 150_000), (10, 101): (1, 99_000), (11, 102): (3, 10_000), (13, 104): (1, 5)}
    # order 12 lost its only line to a delete: it counts as an order, not as an order with lines
    totals, per_minute = figures(orders, lines)
    assert per_minute == [
        {"minute": "2026-01-01T09:00:00", "orders": 1, "orders_with_lines": 1, "lines": 2, "units": 3,
         "revenue": 399_000},
        {"minute": "2026-01-01T09:01:00", "orders": 2, "orders_with_lines": 1, "lines": 1, "units": 3,
         "revenue": 30_000},
        {"minute": "2026-01-01T09:03:00", "orders": 1, "orders_with_lines": 1, "lines": 1, "units": 1, "revenue": 5},
    ]
    assert totals == {"orders": 4, "orders_with_lines": 3, "lines": 4, "units": 7, "revenue": 429_005}
    assert figures({}, {}) == ({"orders": 0, "orders_with_lines": 0, "lines": 0, "units": 0, "revenue": 0}, [])


def test_truncated_distribution():
    assert truncated(np.array([0.5, 0.3, 0.1, 0.1]), 2) == pytest.approx([0.625, 0.375])


def test_draw_makes_consistent_orders_with_the_store_skew():
    sample = StoreSample(
        customer_ids=np.array([1, 2, 3]), customer_p=np.array([0.8, 0.1, 0.1]),
        places=np.array([[101, 1], [202, 2]]), place_p=np.array([0.5, 0.5]),
        product_ids=np.array([7, 8, 9, 10, 11]), prices=np.array([100, 200, 300, 400, 500]),
        product_p=np.full(5, 0.2))
    price = {7: 100, 8: 200, 9: 300, 10: 400, 11: 500}
    rng = np.random.default_rng(1)
    drafts = [sample.draw(rng, truncated(np.array([0.3, 0.3, 0.2, 0.2]), 4), np.array([0.5, 0.3, 0.2]))
              for _ in range(2000)]
    for d in drafts:
        assert 1 <= len(d.lines) <= 4
        assert len({p for p, _, _ in d.lines}) == len(d.lines)
        assert all(item_price == price[p] and 1 <= qty <= 3 for p, qty, item_price in d.lines)
        assert (d.city_id, d.province_id) in {(101, 1), (202, 2)}
    who = Counter(d.customer_id for d in drafts)
    assert 0.75 < who[1] / len(drafts) < 0.85


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 0, "duration": 1}, "--rate and --duration must be above 0"),
    ({"rate": 1, "duration": 1, "updates": 1.5}, "--updates is a share"),
    ({"rate": 1, "duration": 1, "deletes": -0.1}, "--deletes is a share"),
    ({"rate": 0.1, "duration": 1}, "places no order"),
])
def test_bad_arguments_are_one_line_errors_before_connecting(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        simulate("postgresql://nobody@127.0.0.1:1/none", **kwargs)


def test_a_sqlite_store_is_refused():
    with pytest.raises(ConfigError, match="PostgreSQL store only"):
        simulate("sqlite:////nonexistent/store.db", rate=1, duration=1)


def test_argparse_types():
    assert positive("2.5") == 2.5 and fraction("0") == 0.0 and fraction("1") == 1.0
    for parse, text in ((positive, "0"), (positive, "x"), (positive, "inf"), (fraction, "1.01"), (fraction, "-0.2")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
