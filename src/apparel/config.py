"""Settings: YAML files in ``conf/`` (``base.yaml`` then ``<env>.yaml``), overridden by ``APPAREL_*``
environment variables.

The environment is chosen by ``APPAREL_ENV`` (default ``local``). Relative paths in the files resolve
against the project root, so a command gives the same result from any working directory.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import yaml

from apparel.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# environment variable -> dotted key in the settings tree
ENV_OVERRIDES: dict[str, str] = {
    "APPAREL_LAKEHOUSE": "lakehouse",
    "APPAREL_LANDING": "landing",
    "APPAREL_STORE_DB": "store_db",
    "APPAREL_STORE_READ_DB": "store_read_db",
    "APPAREL_STORE_SHARD_URLS": "store_shard_urls",
    "APPAREL_REPORTS": "reports",
    "APPAREL_SPARK_MASTER": "spark.master",
    "APPAREL_SPARK_DRIVER_MEMORY": "spark.driver_memory",
    "APPAREL_SPARK_JAVA_OPTIONS": "spark.java_options",
    "APPAREL_SPARK_EXECUTOR_JAVA_OPTIONS": "spark.executor_java_options",
    "APPAREL_SPARK_CDS": "spark.class_data_sharing",
    "APPAREL_SPARK_CDS_DIR": "spark.cds_dir",
    "APPAREL_SPARK_CHECKPOINT_DIR": "spark.checkpoint_dir",
    "APPAREL_JDBC_PARTITIONS": "jdbc.num_partitions",
    "APPAREL_BRONZE_LOOKBACK_ORDERS": "bronze.lookback_orders",
    "APPAREL_BRONZE_SNAPSHOT_MAX_LOSS": "bronze.snapshot_max_loss_percent",
    "APPAREL_BRONZE_STANDBY_MAX_LAG": "bronze.standby_max_lag_seconds",
    "APPAREL_MAINTENANCE_RETENTION_HOURS": "maintenance.retention_hours",
    "APPAREL_JARS_CACHE": "jars.cache_dir",
    "APPAREL_S3_ENDPOINT": "s3.endpoint",
    "APPAREL_S3_REGION": "s3.region",
    "APPAREL_S3_PATH_STYLE": "s3.path_style",
    "APPAREL_S3_ACCESS_KEY": "s3.access_key",
    "APPAREL_S3_SECRET_KEY": "s3.secret_key",
    "APPAREL_S3_CREDENTIALS_FILE": "s3.credentials_file",
    "APPAREL_S3_LAKE_BUCKETS": "s3.lake_buckets",
    "APPAREL_TRINO_URL": "trino.url",
    "APPAREL_TRINO_USER": "trino.user",
    "APPAREL_TRINO_METASTORE_DIR": "trino.metastore_dir",
    "APPAREL_SUPERSET_URL": "superset.url",
    "APPAREL_CDC": "cdc.enabled",
    "APPAREL_KAFKA_BOOTSTRAP": "cdc.kafka_bootstrap",
    "APPAREL_CONNECT_URL": "cdc.connect_url",
    "APPAREL_CDC_TOPIC_PREFIX": "cdc.topic_prefix",
    "APPAREL_CDC_SLOT": "cdc.slot",
    "APPAREL_CDC_USER": "cdc.user",
    "APPAREL_CDC_PASSWORD": "cdc.password",
    "APPAREL_STREAM_TRIGGER": "stream.trigger",
    "APPAREL_STREAM_CHECKPOINT": "stream.checkpoint",
    "APPAREL_STREAM_MAX_LAG_SECONDS": "stream.health_max_lag_seconds",
    "APPAREL_STREAM_STATE_DIR": "stream.state_dir",
    "APPAREL_STREAM_SILVER_INTERVAL": "stream.silver_interval",
    "APPAREL_LIVE_NOW": "stream.live_now",
    "APPAREL_LOCK_STALE_AFTER": "lock.stale_after",
    "APPAREL_SPARK_CLUSTER_URL": "spark_cluster.url",
    "APPAREL_SPARK_CLUSTER_UI_PORT": "spark_cluster.ui_port",
    "APPAREL_SPARK_CLUSTER_WORKERS": "spark_cluster.workers",
    "APPAREL_SPARK_CLUSTER_WORKER_CORES": "spark_cluster.worker_cores",
    "APPAREL_SPARK_CLUSTER_WORKER_MEMORY": "spark_cluster.worker_memory",
}


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def resolve_path(value: str, root: Path = PROJECT_ROOT) -> str:
    """Return an absolute local path, or the URI unchanged when ``value`` has a scheme (s3a://...)."""
    if "://" in value:
        return value.rstrip("/")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = root / path
    return str(path.resolve())


def _setting_int(tree: dict, dotted: str, minimum: int) -> int:
    """An integer setting of the tree, at least ``minimum``; a clear error naming the key and its variable."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"setting {dotted} is missing (its default is in conf/base.yaml)")
        node = node[part]
    var = next((v for v, d in ENV_OVERRIDES.items() if d == dotted), None)
    where = f"{dotted}" + (f" ({var})" if var else "")
    try:
        value = int(str(node).strip())
    except ValueError:
        raise ConfigError(f"{where} must be a whole number, got {node!r}") from None
    if value < minimum:
        raise ConfigError(f"{where} must be {minimum} or more, got {value}")
    return value


@dataclass(frozen=True)
class BronzeSettings:
    """``bronze:`` in conf/base.yaml."""

    lookback_orders: int    # order ids below the high-water mark re-read each run for late rows (0: none)
    snapshot_max_loss_percent: int  # a master snapshot losing more of the held snapshot's keys fails the run
    standby_max_lag_seconds: int = 30  # a sharded store: a shard's standby lagging more is not read (its primary is)


@dataclass(frozen=True)
class MaintenanceSettings:
    """``maintenance:`` in conf/base.yaml (``apparel maintain``)."""

    retention_hours: int    # VACUUM keeps the files older versions need for this long (Delta's floor: 168)


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class CdcSettings:
    """``cdc:`` in conf/base.yaml: the change data capture path (README "Real-time path")."""

    enabled: bool
    kafka_bootstrap: str
    connect_url: str
    topic_prefix: str       # topics are <prefix>.public.<table>; the connector is named after it
    slot: str
    publication: str
    user: str
    password: str           # APPAREL_CDC_PASSWORD only; "" for the local trust-authenticated server
    heartbeat_ms: int

    def topic(self, table: str) -> str:
        return f"{self.topic_prefix}.public.{table}"


@dataclass(frozen=True)
class StreamSettings:
    """``stream:`` in conf/base.yaml (``apparel stream``)."""

    trigger: str
    checkpoint: str         # resolved: a local path or an s3a:// URI
    max_offsets_per_trigger: int
    health_max_lag_seconds: int
    state_dir: str          # local: pid, log and status.json of `apparel stream`
    full_check_every: int   # the stream's silver runs between whole-table accounting checks
    silver_interval: int    # seconds from the start of one of the stream's silver runs to the next, at least


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one environment."""

    env: str
    lakehouse: str
    landing: str
    store_db: str
    raw: dict = field(repr=False)

    @property
    def store_read_db(self) -> str:
        """The URL the extraction reads the store with: a read-only role's (``store_read_db``), else the
        owner's (``store_db``)."""
        return _store_url(str(self.raw.get("store_read_db") or self.store_db))

    @property
    def store_shard_urls(self) -> list[str]:
        """The shards of a sharded store (``store_shard_urls``, whitespace-separated; a URL may name several
        hosts with commas), which bronze reads orders and order_details from; empty: one database."""
        return [_store_url(u) for u in str(self.raw.get("store_shard_urls") or "").split()]

    @property
    def reports(self) -> str:
        """Folder of the HTML run reports (local)."""
        return resolve_path(str(self.raw.get("reports", "./var/reports")))

    @property
    def spark(self) -> dict:
        return self.raw["spark"]

    @property
    def jdbc(self) -> dict:
        return self.raw["jdbc"]

    @property
    def jars(self) -> dict:
        return self.raw["jars"]

    @property
    def workbooks(self) -> dict:
        return self.raw["workbooks"]

    @property
    def s3(self) -> dict:
        """Object store settings (endpoint, region, path_style as a bool, credentials_file resolved); the keys
        are read by :func:`apparel.objectstore.credentials`."""
        s3 = dict(self.raw.get("s3") or {})
        s3["path_style"] = str(s3.get("path_style", True)).strip().lower() not in ("false", "0", "no", "off")
        s3["credentials_file"] = resolve_path(str(s3.get("credentials_file") or "./.services/credentials.env"))
        return s3

    @property
    def trino(self) -> dict:
        """Trino settings; ``url`` is "" when switched off (``APPAREL_TRINO_URL=off``)."""
        trino = dict(self.raw.get("trino") or {})
        url = str(trino.get("url") or "").strip()
        trino["url"] = "" if url.lower() in ("off", "none") else url
        return trino

    @property
    def bronze(self) -> BronzeSettings:
        loss = _setting_int(self.raw, "bronze.snapshot_max_loss_percent", 0)
        if loss > 100:
            raise ConfigError(f"bronze.snapshot_max_loss_percent (APPAREL_BRONZE_SNAPSHOT_MAX_LOSS) must be 0 to "
                              f"100, got {loss}")
        return BronzeSettings(lookback_orders=_setting_int(self.raw, "bronze.lookback_orders", 0),
                              snapshot_max_loss_percent=loss,
                              standby_max_lag_seconds=_setting_int(self.raw, "bronze.standby_max_lag_seconds", 0))

    @property
    def maintenance(self) -> MaintenanceSettings:
        return MaintenanceSettings(retention_hours=_setting_int(self.raw, "maintenance.retention_hours", 0))

    @property
    def cdc(self) -> CdcSettings:
        c = dict(self.raw.get("cdc") or {})
        return CdcSettings(
            enabled=_truthy(c.get("enabled", False)),
            kafka_bootstrap=str(c.get("kafka_bootstrap") or "127.0.0.1:19092"),
            connect_url=str(c.get("connect_url") or "http://127.0.0.1:18083").rstrip("/"),
            topic_prefix=str(c.get("topic_prefix") or "apparel"),
            slot=str(c.get("slot") or "apparel_cdc"),
            publication=str(c.get("publication") or "apparel_cdc"),
            user=str(c.get("user") or "apparel_cdc"),
            password=str(c.get("password") or ""),
            heartbeat_ms=_setting_int(self.raw, "cdc.heartbeat_ms", 0),
        )

    @property
    def stream(self) -> StreamSettings:
        s = dict(self.raw.get("stream") or {})
        checkpoint = str(s.get("checkpoint") or "./var/stream/checkpoint")
        return StreamSettings(
            trigger=str(s.get("trigger") or "2 seconds"),
            checkpoint=checkpoint if is_s3_uri(checkpoint) else resolve_path(checkpoint),
            max_offsets_per_trigger=_setting_int(self.raw, "stream.max_offsets_per_trigger", 1),
            health_max_lag_seconds=_setting_int(self.raw, "stream.health_max_lag_seconds", 1),
            state_dir=resolve_path(str(s.get("state_dir") or "./var/stream")),
            full_check_every=_setting_int(self.raw, "stream.full_check_every", 1),
            silver_interval=_setting_int(self.raw, "stream.silver_interval", 0),
        )

    @property
    def live_now(self) -> datetime:
        """The "now" of ``gold.dm_sales_live`` (naive UTC): ``stream.live_now`` when set (an ISO timestamp; an
        offset is converted to UTC), else the current UTC time."""
        raw = str((self.raw.get("stream") or {}).get("live_now") or "").strip()
        if not raw:
            return datetime.now(timezone.utc).replace(tzinfo=None)
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise ConfigError(f"stream.live_now (APPAREL_LIVE_NOW) must be an ISO timestamp such as "
                              f"2022-12-01T10:30:00, got {raw!r}") from None
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value

    @property
    def superset(self) -> dict:
        return dict(self.raw.get("superset") or {})

    @property
    def on_s3(self) -> bool:
        """True when the lakehouse lives in an object store (``s3a://bucket/prefix``)."""
        return is_s3_uri(self.lakehouse)


def is_s3_uri(value: str) -> bool:
    return value.startswith(("s3a://", "s3://"))


def _store_url(url: str) -> str:
    """A SQLite URL's path resolved against the checkout; other URLs as they are."""
    return "sqlite:///" + resolve_path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else url


def load_settings(env: str | None = None, conf_dir: Path | None = None,
                  environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Load ``base.yaml`` + ``<env>.yaml`` from ``conf_dir``, then environment variables, then ``overrides``
    (keyword arguments with dotted keys written with ``__``, e.g. ``spark__master="local[1]"``)."""
    environ = os.environ if environ is None else environ
    env = env or environ.get("APPAREL_ENV", "local")
    conf_dir = conf_dir or Path(environ.get("APPAREL_CONF_DIR", PROJECT_ROOT / "conf"))
    base_file = conf_dir / "base.yaml"
    if not base_file.exists():
        raise ConfigError(f"settings file not found: {base_file}")
    tree = _read_yaml(base_file)
    env_file = conf_dir / f"{env}.yaml"
    if not env_file.exists():
        known = sorted(p.stem for p in conf_dir.glob("*.yaml") if p.stem != "base")
        raise ConfigError(f"unknown environment {env!r}: no {env_file} (known: {', '.join(known)})")
    tree = _merge(tree, _read_yaml(env_file))
    for var, dotted in ENV_OVERRIDES.items():
        if environ.get(var):
            _set_dotted(tree, dotted, environ[var])
    for key, value in overrides.items():
        _set_dotted(tree, key.replace("__", "."), value)

    return Settings(
        env=env,
        lakehouse=resolve_path(str(tree["lakehouse"])),
        landing=resolve_path(str(tree["landing"])),
        store_db=_store_url(str(tree["store_db"])),
        raw=tree,
    )
