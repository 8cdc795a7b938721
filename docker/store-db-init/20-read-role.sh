#!/bin/bash
# The extraction's read-only role (README "Least privilege"): it logs in and reads the tables the owner
# ($POSTGRES_USER, who seeds the store) creates in the store database, and can write nothing.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v role="$APPAREL_STORE_READ_USER" -v password="$APPAREL_STORE_READ_PASSWORD" <<'SQL'
CREATE ROLE :"role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO :"role";
SQL
