"""
### Marts: silver to the gold datamarts

Scheduled on the silver Assets: it runs after each silver build. One Spark job
(`spark_jobs/gold_build.py`) rebuilds every mart (sales, products, regions, customers and RFM, cohorts,
basket pairs), each in one Delta commit, so readers never see half a mart. The task log ends with the
row accounting of the silver run the marts were built on, read from `ops.dq_results`.
"""
from airflow.sdk import DAG

from apparel.orchestration import SparkJobOperator, assets, dag_defaults, layer_tables

with DAG(
    dag_id="apparel_marts",
    schedule=assets(layer_tables("silver")),
    doc_md=__doc__,
    **dag_defaults("gold"),
):
    SparkJobOperator(
        task_id="gold_build",
        job="gold_build.py",
        outlets=assets(layer_tables("gold")),
        doc_md=__doc__,
    )
