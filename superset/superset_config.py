"""Superset settings of the Django Apparel stack (SUPERSET_CONFIG_PATH points here; scripts/superset.sh and
docker-compose.yml set it). Secrets come from the environment only, with no default: Superset refuses to start
without them.

- SUPERSET_SECRET_KEY (required): signs sessions and encrypts the connection details in the metadata database.
- SUPERSET_METADATA_DB: the metadata database's SQLAlchemy URL; default SQLite in $SUPERSET_HOME/superset.db.
"""

import os
import sys

SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY", "")
if len(SECRET_KEY) < 16:
    sys.exit("superset_config: set SUPERSET_SECRET_KEY (a random string of at least 16 characters, e.g. "
             "`openssl rand -base64 42`); Superset ships no default")

_home = os.environ.get("SUPERSET_HOME") or os.path.expanduser("~/.superset")
SQLALCHEMY_DATABASE_URI = os.environ.get("SUPERSET_METADATA_DB") or f"sqlite:///{_home}/superset.db"

# The examples are never loaded; the assets in superset/assets/ are the only dashboards.
SUPERSET_LOAD_EXAMPLES = False
# Anonymous visitors see nothing; the Viewer role (scripts: superset/bootstrap.py) sees the dashboards.
PUBLIC_ROLE_LIKE = None
# Results and filter state in process memory: one gunicorn worker, no Redis needed.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
DATA_CACHE_CONFIG = CACHE_CONFIG
FILTER_STATE_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 86400}
EXPLORE_FORM_DATA_CACHE_CONFIG = FILTER_STATE_CACHE_CONFIG
RATELIMIT_STORAGE_URI = "memory://"
# Trino on the small machine can take a while for the first query after a start.
SQLLAB_TIMEOUT = 120
SUPERSET_WEBSERVER_TIMEOUT = 120
# Served on 127.0.0.1 over plain HTTP by default: no HTTPS-only cookies or HSTS.
TALISMAN_ENABLED = os.environ.get("SUPERSET_TALISMAN", "false").lower() == "true"
SESSION_COOKIE_SECURE = False
