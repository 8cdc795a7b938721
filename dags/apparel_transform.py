"""
### Transform: bronze to silver, through the data contract

Scheduled on the bronze Assets: it runs once every bronze table has been updated since its last run.
One Spark job (`spark_jobs/silver_build.py`) applies the contract (rejected rows go to `quarantine.*` with
their reason, duplicates are removed), builds the dimensions (customers and products as SCD type 2) and
the facts, and appends one accounting row per source table to `ops.dq_results`. The task log ends with
that accounting, read back from `ops.dq_results`: rows read = written + quarantined + duplicates.

The run date (the SCD2 effective date) is the logical date of the ingestion run that triggered it.
"""
from airflow.sdk import DAG

from apparel.orchestration import SparkJobOperator, assets, dag_defaults, layer_tables

with DAG(
    dag_id="apparel_transform",
    schedule=assets(layer_tables("bronze")),
    doc_md=__doc__,
    **dag_defaults("silver"),
):
    SparkJobOperator(
        task_id="silver_build",
        job="silver_build.py",
        outlets=assets(layer_tables("silver") + layer_tables("quarantine") + ["ops.dq_results"]),
        doc_md=__doc__,
    )
