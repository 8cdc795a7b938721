"""``python -m apparel.services``: the resolved settings the native service scripts need, as shell assignments.

scripts/objectstore.sh and scripts/trino.sh ``eval`` this output, so conf/ and ``APPAREL_*`` variables stay
the one source of truth: the local store listens on the port of ``s3.endpoint`` and Trino on the port of
``trino.url``, which is where the clients look for them. No secret is printed.
"""

from __future__ import annotations

import shlex
import sys

from apparel.config import load_settings


def service_env(settings) -> dict[str, str]:
    s3, trino, cdc = settings.s3, settings.trino, settings.cdc
    return {
        "APPAREL_S3_ENDPOINT": str(s3["endpoint"]),
        "APPAREL_S3_REGION": str(s3["region"]),
        "APPAREL_S3_PATH_STYLE": str(s3["path_style"]).lower(),
        "APPAREL_S3_CREDENTIALS_FILE": str(s3["credentials_file"]),
        "APPAREL_TRINO_URL": str(trino.get("url") or ""),
        "APPAREL_TRINO_METASTORE_DIR": str(trino.get("metastore_dir") or ""),
        "APPAREL_TRINO_USER": str(trino.get("user") or "apparel"),
        "APPAREL_SUPERSET_URL": str(settings.superset.get("url") or ""),
        "APPAREL_KAFKA_BOOTSTRAP": cdc.kafka_bootstrap,
        "APPAREL_CONNECT_URL": cdc.connect_url,
    }


def main() -> int:
    for key, value in service_env(load_settings()).items():
        print(f"{key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
