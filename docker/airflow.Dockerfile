# Airflow 3.3 with what the DAGs submit: Java for Spark, the project's pinned venv packages and the project.
# Built by `docker compose build` (docker-compose.yml). Not built in this repository's CI (it has no Docker
# engine); the native path (`make airflow`) is the tested one.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless curl \
 && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64

USER airflow
COPY --chown=airflow:root requirements.txt requirements-airflow.txt constraints-airflow.txt pyproject.toml /opt/apparel/
COPY --chown=airflow:root src /opt/apparel/src
COPY --chown=airflow:root conf /opt/apparel/conf
COPY --chown=airflow:root spark_jobs /opt/apparel/spark_jobs
RUN pip install --no-cache-dir -r /opt/apparel/requirements.txt -r /opt/apparel/requirements-airflow.txt \
      -c /opt/apparel/constraints-airflow.txt \
 && pip install --no-cache-dir --no-deps -e /opt/apparel \
 && apparel jars > /dev/null
