"""
### Stream health: is the real-time path running and caught up?

Every 5 minutes (`APPAREL_STREAM_HEALTH_SCHEDULE`) one task checks the streaming query (`apparel stream status`):
it fails when the query is not running, or when it lags more than `APPAREL_STREAM_MAX_LAG_SECONDS` (default 120)
behind the store with messages waiting in Kafka. A failed run is the alert; the log says why (and the query's
last log lines when it is down). With change data capture off (`APPAREL_CDC` unset) there is no stream to
watch and the task is skipped. No retries: the next run comes five minutes later.
"""
from airflow.sdk import DAG, task

from apparel.orchestration import check_stream_health, dag_defaults, schedule

with DAG(
    dag_id="apparel_stream_health",
    schedule=schedule("apparel_stream_health"),
    doc_md=__doc__,
    **dag_defaults("stream"),
):
    task(task_id="stream_health", retries=0, doc_md=__doc__)(check_stream_health)()
