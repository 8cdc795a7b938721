"""``python -m apparel.services``: the resolved settings the native service scripts need, as shell assignments.

scripts/objectstore.sh and scripts/trino.sh ``eval`` this output, so conf/ and ``APPAREL_*`` variables stay
the one source of truth: the local store listens on the port of ``s3.endpoint`` and Trino on the port of
``trino.url``, which is where the clients look for them. No secret is printed.

``python -m apparel.services s3-identities`` prints the native store's identities (its ``-s3.config`` file):
one per role, with the keys taken from the environment (scripts/services-lib.sh ``load_credentials``).
"""

from __future__ import annotations

import json
import os
import shlex
import sys

from apparel.config import load_settings
from apparel.errors import ConfigError


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
        **{f"APPAREL_SPARK_CLUSTER_{k.upper()}": str(v) for k, v in settings.raw["spark_cluster"].items()},
    }


def s3_identities(settings, keys: dict[str, str]) -> dict:
    """The native store's identities, least privilege (README "Least privilege"):

    - ``pipeline`` (APPAREL_S3_ACCESS_KEY / APPAREL_S3_SECRET_KEY): creates the buckets that match
      ``s3.lake_buckets`` and reads, lists, writes and deletes in them; nothing elsewhere;
    - ``trino`` (APPAREL_TRINO_S3_ACCESS_KEY / APPAREL_TRINO_S3_SECRET_KEY): reads and lists those buckets, and
      writes (and deletes) only under its metastore folder (``trino.metastore_dir``);
    - no ``anonymous`` identity: a request without a valid signature is refused.

    SeaweedFS grants an action on ``<bucket>`` or on a ``<bucket>/<key prefix>*`` pattern."""
    from apparel.objectstore import S3Location

    pattern = str(settings.s3.get("lake_buckets") or "").strip()
    if not pattern or "/" in pattern or pattern in ("*", "-*"):
        raise ConfigError(f"s3.lake_buckets (APPAREL_S3_LAKE_BUCKETS) must name the lake's buckets, a name or a "
                          f"prefix ending in *, not {pattern!r}")
    metastore = S3Location.parse(str(settings.trino["metastore_dir"]))
    missing = [k for k in ("APPAREL_S3_ACCESS_KEY", "APPAREL_S3_SECRET_KEY", "APPAREL_TRINO_S3_ACCESS_KEY",
                           "APPAREL_TRINO_S3_SECRET_KEY") if not keys.get(k)]
    if missing:
        raise ConfigError(f"the store's identities need {', '.join(missing)} (scripts/services-lib.sh sets them)")
    if keys["APPAREL_S3_ACCESS_KEY"] == keys["APPAREL_TRINO_S3_ACCESS_KEY"]:
        raise ConfigError("Trino's key must differ from the pipeline's: it only reads the lake")

    def identity(name, role, actions):
        return {"name": name, "actions": actions,
                "credentials": [{"accessKey": keys[f"APPAREL_{role}_ACCESS_KEY"],
                                 "secretKey": keys[f"APPAREL_{role}_SECRET_KEY"]}]}

    return {"identities": [
        identity("pipeline", "S3", [f"Admin:{pattern}"]),
        identity("trino", "TRINO_S3", [f"Read:{pattern}", f"List:{pattern}",
                                       f"Write:{metastore.bucket}/{metastore.key}/*".replace("//", "/")]),
    ]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = load_settings()
    if argv == ["s3-identities"]:
        try:
            print(json.dumps(s3_identities(settings, dict(os.environ)), indent=2))
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    for key, value in service_env(settings).items():
        print(f"{key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
