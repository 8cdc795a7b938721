#!/bin/bash
# The capture role of change data capture (README "Real-time path"): it may open a replication connection and
# read; `apparel cdc prepare` (the cdc-init job) grants it SELECT on the five store tables and nothing else.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v role="$APPAREL_CDC_USER" -v password="$APPAREL_CDC_PASSWORD" <<'SQL'
CREATE ROLE :"role" LOGIN REPLICATION PASSWORD :'password';
SQL
