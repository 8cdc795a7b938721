"""The pieces the DAGs share (apparel.orchestration), on literal contexts: the run date each job gets, the
Assets of each layer, the task defaults."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

pytest.importorskip("airflow.sdk", reason="Airflow is installed by `make airflow-setup` (and `make test`)")

from apparel import orchestration as orch  # noqa: E402
from apparel.jobs.gold import LIVE, MARTS  # noqa: E402


def event(run_date=None):
    return SimpleNamespace(extra={"run_date": run_date} if run_date else {})


def test_run_date_is_the_logical_date_when_there_is_one():
    ctx = {"logical_date": datetime(2026, 3, 1, tzinfo=timezone.utc),
           "triggering_asset_events": {"a": [event("2026-02-01")]}}
    assert orch.run_date_of(ctx) == date(2026, 3, 1)


def test_asset_triggered_run_takes_the_latest_producer_run_date():
    ctx = {"logical_date": None, "triggering_asset_events": {
        "bronze.orders": [event("2026-03-02"), event("2026-03-04")],
        "bronze.cities": [event("2026-03-03"), event()]}}
    assert orch.run_date_of(ctx) == date(2026, 3, 4)


def test_run_date_falls_back_to_run_after_when_events_carry_none():
    ctx = {"triggering_asset_events": {"x": [event()]},
           "dag_run": SimpleNamespace(run_after=datetime(2026, 5, 6, 23, 59, tzinfo=timezone.utc))}
    assert orch.run_date_of(ctx) == date(2026, 5, 6)


def test_assets_per_layer_and_group():
    assert orch.bronze_tables("store") == ["bronze.customers", "bronze.products", "bronze.product_categories",
                                          "bronze.orders", "bronze.order_details"]
    assert sorted(orch.bronze_tables("excel")) == ["bronze.cities", "bronze.provinces"]
    assert len(orch.layer_tables("silver")) == 7
    assert sorted(orch.layer_tables("gold")) == sorted([f"gold.{m}" for m in MARTS] + [LIVE])  # 8 marts, the live one
    a = orch.asset("gold.dm_sales_monthly")
    assert (a.name, a.uri) == ("gold.dm_sales_monthly", "apparel://lakehouse/gold/dm_sales_monthly")
    with pytest.raises(KeyError, match="gold.nope"):
        orch.asset("gold.nope")


def test_default_args_keep_two_retries_at_least(monkeypatch):
    monkeypatch.setenv("APPAREL_AIRFLOW_RETRIES", "0")
    monkeypatch.setenv("APPAREL_AIRFLOW_RETRY_DELAY", "5")
    args = orch.default_args()
    assert args["retries"] == 2 and args["retry_delay"] == timedelta(seconds=5)
    assert args["retry_exponential_backoff"] is True
    monkeypatch.setenv("APPAREL_AIRFLOW_RETRIES", "4")
    monkeypatch.setenv("APPAREL_AIRFLOW_RETRY_DELAY", "not a number")
    args = orch.default_args()
    assert args["retries"] == 4 and args["retry_delay"] == timedelta(seconds=60)


def test_schedules_default_in_one_place_and_follow_the_environment(monkeypatch):
    monkeypatch.delenv("APPAREL_INGEST_SCHEDULE", raising=False)
    monkeypatch.delenv("APPAREL_MAINTENANCE_SCHEDULE", raising=False)
    assert orch.schedule("apparel_ingestion") == "@daily"
    assert orch.schedule("apparel_maintenance") == "0 4 * * 0"
    monkeypatch.setenv("APPAREL_MAINTENANCE_SCHEDULE", "@weekly")
    assert orch.schedule("apparel_maintenance") == "@weekly"


def test_the_ingestion_passes_accept_shrink_from_the_dag_runs_conf():
    def args(job: str, conf) -> list[str]:
        return orch.accept_shrink_args(f"/x/spark_jobs/{job}", {"dag_run": SimpleNamespace(conf=conf)})

    assert args("bronze_ingest.py", {"accept_shrink": ["cities", "customers"]}) == \
        ["--accept-shrink", "cities", "--accept-shrink", "customers"]
    assert args("bronze_ingest.py", {"accept_shrink": "cities"}) == ["--accept-shrink", "cities"]
    assert args("bronze_ingest.py", {}) == args("bronze_ingest.py", None) == []
    assert args("silver_build.py", {"accept_shrink": ["cities"]}) == []  # only bronze takes it
    assert orch.accept_shrink_args("/x/spark_jobs/bronze_ingest.py", {}) == []  # no DAG run in the context
