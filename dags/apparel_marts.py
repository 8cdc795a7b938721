"""
### Marts: silver to the gold datamarts, then the query layer

Scheduled on the silver Assets: it runs after each silver build. One Spark job
(`spark_jobs/gold_build.py`) rebuilds every mart (sales, products, regions, customers and RFM, cohorts,
basket pairs), each in one Delta commit, so readers never see half a mart. The task log ends with the
row accounting of the silver run the marts were built on, read from `ops.dq_results`.

Then **refresh_query_layer** registers new tables in Trino (`apparel register`), so SQL users and the
dashboards see them at once. It is skipped when the lakehouse is on local disk (Trino reads only an
`s3a://` lakehouse) and fails, then retries, when Trino is configured but does not answer.
"""
from airflow.sdk import DAG, task

from apparel.orchestration import SparkJobOperator, assets, dag_defaults, layer_tables

with DAG(
    dag_id="apparel_marts",
    schedule=assets(layer_tables("silver")),
    doc_md=__doc__,
    **dag_defaults("gold"),
):
    gold = SparkJobOperator(
        task_id="gold_build",
        job="gold_build.py",
        outlets=assets(layer_tables("gold")),
        doc_md=__doc__,
    )

    @task(doc_md=__doc__)
    def refresh_query_layer():
        from apparel.orchestration import refresh_query_layer as refresh

        refresh()

    gold >> refresh_query_layer()
