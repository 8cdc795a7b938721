# Django Apparel lakehouse. `make run` runs the main job on the embedded default, `make test` runs every test.
# Both install what they need: the venv at .venv/ (packages installed by uv, cached under ~/.cache/uv) and the
# JVM jars (cached under ~/.cache/apparel/jars).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AIRFLOW_STAMP := $(VENV)/.airflow-installed
LINT_STAMP := $(VENV)/.lint-installed
# uv installs the pinned requirements into the venv: the same packages as pip resolves (same pins and
# constraints), in a third of the time (wheels linked from its cache)
UV_VERSION := 0.13.9
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python
# uv writes no bytecode: it leaves that to the first import, and where PYTHONDONTWRITEBYTECODE is set (our CI
# machines set it) no import writes it either, so every process compiled each module it imported from source
# (`import airflow.sdk, pyspark.sql, pandas`: 6.0 CPU seconds, 2.2 from bytecode). Compiled after each install
# (compileall skips what is current; the whole venv takes about 25 CPU seconds once)
BYTECODE := $(BIN)/python -m compileall -q -j 0 $(VENV)/lib
DATASET ?=
PYTEST_ARGS ?=

JUPYTER_PORT ?= 8888

.PHONY: setup airflow-setup run test unit lint seed status airflow airflow-stop clean-lake help services-up services-down \
	services-status superset superset-import jupyter

help:
	@echo "make run    - seed the sample (or DATASET=dir) and run the pipeline on the embedded default"
	@echo "make test   - run every test (unit, contract, integration; starts PostgreSQL, the object store, Trino and Airflow itself)"
	@echo "make lint   - ruff over the code, the tests and the notebooks, and the secrets scan of every tracked file"
	@echo "make setup  - create .venv and resolve the JVM jars"
	@echo "make services-up / services-down - the object store (SeaweedFS), Trino and Superset, natively, no Docker"
	@echo "make superset - Superset alone (needs SUPERSET_SECRET_KEY and SUPERSET_ADMIN_PASSWORD)"
	@echo "make jupyter - JupyterLab on notebooks/ with the project's kernel (apparel)"
	@echo "make airflow      - start Airflow 3.3 standalone with the project's DAGs (http://127.0.0.1:8080)"
	@echo "make airflow-stop - stop it"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) -r requirements.txt
	$(UV) --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name apparel --display-name "Python (apparel)" > /dev/null
	@$(BYTECODE) > /dev/null
	@touch $(STAMP)

setup: $(STAMP)
	@$(BIN)/apparel jars > /dev/null

# Airflow shares the project's venv; constraints-airflow.txt pins every package it brings
$(AIRFLOW_STAMP): $(STAMP) requirements-airflow.txt constraints-airflow.txt
	$(UV) -r requirements.txt -r requirements-airflow.txt -c constraints-airflow.txt
	@$(BYTECODE) > /dev/null
	@touch $(AIRFLOW_STAMP)

airflow-setup: setup $(AIRFLOW_STAMP)

airflow: airflow-setup
	bash scripts/airflow.sh start

airflow-stop:
	bash scripts/airflow.sh stop

run: setup
	$(BIN)/apparel run $(if $(DATASET),--dataset $(DATASET),)

test: airflow-setup $(LINT_STAMP)
	bash scripts/test.sh $(PYTEST_ARGS)

# ruff (its rules are in pyproject.toml) and the secrets scan (detect-secrets against .secrets.baseline), pinned in
# requirements-lint.txt
$(LINT_STAMP): $(STAMP) requirements-lint.txt
	$(UV) -r requirements-lint.txt
	@$(BYTECODE) > /dev/null
	@touch $(LINT_STAMP)

lint: $(LINT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python scripts/secrets_scan.py

unit: setup
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

status: setup
	$(BIN)/apparel status

clean-lake:
	rm -rf lakehouse var

# The native object store (SeaweedFS) and Trino: installed into ~/.cache/apparel on first use, data and logs in
# .services/. The scripts read the project's settings through the venv, hence `setup`.
services-up: setup
	bash scripts/services.sh up

services-down:
	bash scripts/services.sh down

services-status:
	bash scripts/services.sh status

# Superset alone (services-up also starts it when its secrets are set); `superset-import` re-imports the assets.
superset: setup
	bash scripts/superset.sh start

superset-import: setup
	bash scripts/superset.sh import

# JupyterLab (requirements-jupyter.txt, into .venv on first use) on notebooks/, kernel "apparel".
$(VENV)/.jupyter: requirements-jupyter.txt $(STAMP)
	$(UV) -r requirements-jupyter.txt
	@touch $@

jupyter: setup $(VENV)/.jupyter
	$(BIN)/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --port=$(JUPYTER_PORT) --no-browser
