"""Debezium change events -> bronze.cdc_* rows, and the image they add up to (apparel.cdc_events), on literal
records shaped like the ones the connector sends (JSON without schema, decimal.handling.mode=string,
time.precision.mode=adaptive: a timestamp without time zone is microseconds since the epoch)."""

from __future__ import annotations

import json
from datetime import datetime

from pyspark.testing import assertDataFrameEqual

from apparel import cdc_events
from apparel.cdc_events import events_for_keys, image, image_problems, parse
from apparel.schemas import SOURCES

ORDERS = SOURCES["orders"]
T0 = datetime(2026, 11, 28, 9, 30)
MICROS = int((T0 - datetime(1970, 1, 1)).total_seconds() * 1_000_000)


def order(order_id, customer_id=7, when=MICROS):
    return {"order_id": order_id, "order_date": when, "customer_id": customer_id, "province_id": 1, "city_id": 2}


def event(op, before=None, after=None, lsn=100, snapshot="false"):
    return json.dumps({"before": before, "after": after, "op": op,
                       "source": {"lsn": lsn, "txId": 5, "ts_us": MICROS + 1, "snapshot": snapshot}})


def records(spark, values):
    rows = [(None, None if v is None else bytearray(v.encode()), "apparel.public.orders", 0, i)
            for i, v in enumerate(values)]
    return spark.createDataFrame(rows, "key BINARY, value BINARY, topic STRING, partition INT, offset BIGINT")


def landed(spark, values):
    return parse(records(spark, values), ORDERS, "cdc-0000000001-abc", T0)


def test_parse_types_the_rows_and_keeps_where_each_event_was(spark):
    got = landed(spark, [event("r", after=order(1), snapshot="first")]).collect()
    assert len(got) == 1
    e = got[0]
    assert (e.op, e._key_before, e._key_after, e._lsn, e._tx_id, e._snapshot, e._offset, e._raw) == \
        ("r", None, 1, 100, 5, True, 0, None)
    assert e.before is None
    assert e.after.asDict() == {"order_id": 1, "order_date": T0, "customer_id": 7, "province_id": 1, "city_id": 2}
    assert e._commit_ts == datetime(2026, 11, 28, 9, 30, 0, 1)


def test_a_tombstone_is_left_out_and_a_malformed_record_is_kept_with_its_text(spark):
    got = landed(spark, [None, "not json", event("c", after=order(2))]).orderBy("_offset").collect()
    assert [(e.op, e._raw, e._offset) for e in got] == [(None, "not json", 1), ("c", None, 2)]


def test_the_image_applies_updates_and_deletes_and_keeps_duplicates(spark):
    events = landed(spark, [
        event("r", after=order(1)),
        event("r", after=order(2)),
        event("r", after=order(2)),                      # an exact duplicate row (no primary key)
        event("c", after=order(3)),
        event("u", before=order(1), after=order(1, customer_id=8)),
        event("d", before=order(2)),                     # one copy of the duplicate goes
        event("c", after=order(4)),
        event("d", before=order(4)),
    ])
    got = image(events, ORDERS).drop("_batch_id")
    want = spark.createDataFrame([(1, T0, 8, 1, 2), (2, T0, 7, 1, 2), (3, T0, 7, 1, 2)], got.schema)
    assertDataFrameEqual(got, want)
    assert image_problems(events, ORDERS).count() == 0


def test_a_delete_of_a_row_never_added_is_a_problem(spark):
    events = landed(spark, [event("d", before=order(9))])
    assert image(events, ORDERS).count() == 0
    assert [r.order_id for r in image_problems(events, ORDERS).collect()] == [9]


def test_events_for_keys_takes_both_sides_of_an_update_once(spark, monkeypatch):
    events = landed(spark, [event("c", after=order(1)), event("u", before=order(1), after=order(1, 9)),
                            event("c", after=order(5)), event("u", before=order(5), after=order(6))])
    keys = spark.createDataFrame([(1,), (6,)], "order_id BIGINT")
    got = sorted(r._offset for r in events_for_keys(events, keys, "order_id").collect())
    assert got == [0, 1, 3]
    # the same keys as a list (a filter, not a join), and a list longer than a filter takes (a join again)
    assert sorted(r._offset for r in events_for_keys(events, [6, 1, 1], "order_id").collect()) == [0, 1, 3]
    monkeypatch.setattr(cdc_events, "LITERAL_KEYS", 1)
    assert sorted(r._offset for r in events_for_keys(events, [6, 1, 1], "order_id").collect()) == [0, 1, 3]
