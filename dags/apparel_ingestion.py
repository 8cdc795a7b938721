"""
### Ingestion: the store database and the operations workbooks land as bronze Delta tables

Two Spark jobs (`spark_jobs/bronze_ingest.py`), one per source group:

- **bronze_store**: customers, products, product_categories, orders and order_details from the store
  database (`APPAREL_STORE_DB`). Orders and order lines are incremental above the high-water mark; the
  masters are full snapshots.
- **bronze_excel**: provinces and cities from the workbooks in the landing area (`APPAREL_LANDING`).

Each task's outlets are the bronze tables it writes: together they schedule `apparel_transform`.
They run one at a time (Spark is the single writer, and both record their batch in `ops.ingest_runs`).
The logical date is passed as `--run-date`, so a backfill replays the dates it covers; a replay of an
already-landed date appends nothing. Schedule: `APPAREL_INGEST_SCHEDULE` (default `@daily`).

A master snapshot that lacks more of bronze's keys than `bronze.snapshot_max_loss_percent` fails its task
(a truncated workbook, a half-loaded table). When the rows were really deleted, trigger the DAG with the
conf `{"accept_shrink": ["cities"]}`: the task then passes `--accept-shrink cities` to the job.
"""

from airflow.sdk import DAG

from apparel.orchestration import SparkJobOperator, assets, bronze_tables, dag_defaults, schedule

with DAG(
    dag_id="apparel_ingestion",
    schedule=schedule("apparel_ingestion"),
    max_active_tasks=1,
    doc_md=__doc__,
    **dag_defaults("bronze"),
):
    for group in ("store", "excel"):
        SparkJobOperator(
            task_id=f"bronze_{group}",
            job="bronze_ingest.py",
            args=["--group", group],
            outlets=assets(bronze_tables(group)),
            doc_md=__doc__,
        )
