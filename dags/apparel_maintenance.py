"""
### Maintenance: OPTIMIZE and VACUUM over every lakehouse table

One Spark job (`spark_jobs/maintain.py`, what `apparel maintain` runs) goes over every bronze, silver, gold,
quarantine and ops table that exists: OPTIMIZE compacts the small files that daily appends and rewrites
leave (a commit that changes no row), then VACUUM deletes the files no version younger than the retention
needs (`APPAREL_MAINTENANCE_RETENTION_HOURS`, default 168 h, Delta's minimum). Time travel works within the
retention. The log has one line per table: files before and after, on storage before and after, seconds.

It declares no Asset outlets on purpose: it changes no data, so it triggers no transform or marts run.
A table that fails (e.g. a concurrent writer's conflict) does not stop the others; the task then fails and
retries. Schedule: `APPAREL_MAINTENANCE_SCHEDULE` (default Sundays 04:00 UTC, `0 4 * * 0`).
"""
from airflow.sdk import DAG

from apparel.orchestration import SparkJobOperator, dag_defaults, schedule

with DAG(
    dag_id="apparel_maintenance",
    schedule=schedule("apparel_maintenance"),
    doc_md=__doc__,
    **dag_defaults("maintenance"),
):
    SparkJobOperator(
        task_id="maintain",
        job="maintain.py",
        doc_md=__doc__,
    )
