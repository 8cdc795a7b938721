"""The object store, over the plain S3 API only: SeaweedFS natively, MinIO under docker compose, any S3
otherwise. Changing stores is a change of settings (endpoint, region, keys, path style), never of code.

- Spark reaches it through S3A (:func:`s3a_conf`); Delta's default log store for ``s3a://``
  (S3SingleDriverLogStore) is safe because Spark is the single writer of the lakehouse.
- The ``minio`` SDK is the admin client: it creates the project's buckets (:func:`ensure_buckets`) and checks
  the endpoint and the credentials before Spark starts, so a bad key fails in a second, naming the endpoint,
  with nothing written.
- The landing area of the workbooks can be an ``s3a://`` prefix too (:func:`land_file`, :func:`landing_file`).
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from apparel.config import Settings, is_s3_uri
from apparel.errors import ConfigError, SetupError, SourceError

# S3 error codes that mean "these credentials are not accepted here"
AUTH_ERRORS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}
MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str  # no leading or trailing slash; "" for the bucket's root

    @classmethod
    def parse(cls, uri: str) -> "S3Location":
        parsed = urlparse(uri)
        if parsed.scheme not in ("s3a", "s3") or not parsed.netloc:
            raise ConfigError(f"{uri!r} is not an s3a://bucket/prefix URI")
        return cls(parsed.netloc, parsed.path.strip("/"))

    def child(self, name: str) -> "S3Location":
        return S3Location(self.bucket, f"{self.key}/{name}".strip("/"))

    def uri(self, scheme: str = "s3a") -> str:
        return f"{scheme}://{self.bucket}/{self.key}".rstrip("/")


def credentials(settings: Settings) -> tuple[str, str]:
    """(access key, secret key): from the settings (APPAREL_S3_ACCESS_KEY / APPAREL_S3_SECRET_KEY), else from the
    credentials file the native store writes at its first start (``s3.credentials_file``)."""
    s3 = settings.s3
    access, secret = s3.get("access_key"), s3.get("secret_key")
    path = Path(s3["credentials_file"])
    if not (access and secret) and path.exists():
        found = credentials_file(settings)
        access = access or found.get("APPAREL_S3_ACCESS_KEY")
        secret = secret or found.get("APPAREL_S3_SECRET_KEY")
    if not (access and secret):
        raise ConfigError(f"no object store credentials for {s3['endpoint']}: set APPAREL_S3_ACCESS_KEY and "
                          f"APPAREL_S3_SECRET_KEY, or start the local store with `make services-up` (writes {path})")
    return str(access), str(secret)


def credentials_file(settings: Settings) -> dict[str, str]:
    """The ``NAME=value`` lines of the credentials file the native store writes (``s3.credentials_file``; every
    role's keys), {} when there is none."""
    path = Path(settings.s3["credentials_file"])
    found = {}
    for line in (path.read_text().splitlines() if path.exists() else []):
        key, sep, value = line.partition("=")
        if sep and not key.strip().startswith("#"):
            found[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return found


def client(settings: Settings):
    """A ``minio.Minio`` client for the configured endpoint, with short timeouts and one retry."""
    import urllib3
    from minio import Minio

    endpoint = urlparse(str(settings.s3["endpoint"]))
    if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
        raise ConfigError(f"APPAREL_S3_ENDPOINT must be http(s)://host:port, not {settings.s3['endpoint']!r}")
    access, secret = credentials(settings)
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=60),
                               retries=urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=[502, 503, 504]))
    return Minio(endpoint.netloc, access_key=access, secret_key=secret, secure=endpoint.scheme == "https",
                 region=str(settings.s3["region"]), http_client=http)


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Hadoop S3A settings (without the ``spark.hadoop.`` prefix) for the configured store."""
    access, secret = credentials(settings)
    endpoint = str(settings.s3["endpoint"])
    return {
        "fs.s3a.endpoint": endpoint,
        "fs.s3a.endpoint.region": str(settings.s3["region"]),
        "fs.s3a.path.style.access": str(settings.s3["path_style"]).lower(),
        "fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https://")).lower(),
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "fs.s3a.access.key": access,
        "fs.s3a.secret.key": secret,
        "fs.s3a.attempts.maximum": "3",
        "fs.s3a.retry.limit": "3",
    }


def _bucket_error(settings: Settings, exc: Exception, bucket: str) -> SetupError:
    from minio.error import S3Error

    endpoint = settings.s3["endpoint"]
    if isinstance(exc, S3Error):
        if exc.code in AUTH_ERRORS:
            return SetupError(f"the object store at {endpoint} rejected the credentials ({exc.code}) for bucket "
                              f"{bucket!r}: check APPAREL_S3_ACCESS_KEY / APPAREL_S3_SECRET_KEY")
        return SetupError(f"the object store at {endpoint} refused bucket {bucket!r}: {exc.code} {exc.message}")
    return SetupError(f"the object store at {endpoint} is not reachable ({type(exc).__name__}): start it with "
                      "`make services-up`, or set APPAREL_S3_ENDPOINT")


def project_buckets(settings: Settings) -> list[str]:
    """The buckets the settings point at: the lakehouse's and the landing area's (when on S3), and Trino's
    metastore's (when the lakehouse is)."""
    uris = [u for u in (settings.lakehouse, settings.landing) if is_s3_uri(u)]
    if settings.on_s3 and settings.trino.get("url") and settings.trino.get("metastore_dir"):
        uris.append(str(settings.trino["metastore_dir"]))
    return list(dict.fromkeys(S3Location.parse(u).bucket for u in uris))


def ensure_buckets(settings: Settings, log=print) -> list[str]:
    """Create the project's missing buckets (idempotent); returns the ones created. Also the early check of
    the endpoint and the credentials: it fails with a one-line reason naming the endpoint."""
    buckets = project_buckets(settings)
    if not buckets:
        return []
    mc = client(settings)
    created = []
    for bucket in buckets:
        try:
            if not mc.bucket_exists(bucket):
                mc.make_bucket(bucket)
                created.append(bucket)
                log(f"[s3] created bucket {bucket} at {settings.s3['endpoint']}")
        except Exception as exc:  # noqa: BLE001 - mapped to one clear line
            if getattr(exc, "code", None) in ("BucketAlreadyOwnedByYou",):
                continue
            raise _bucket_error(settings, exc, bucket) from exc
    return created


# --- the landing area: a local folder or an s3a:// prefix ------------------------------------------------

def land_file(settings: Settings, name: str, source: Path) -> str:
    """Put ``source`` into the landing area as ``name`` (a copy, or one PUT: readers see the old or the new
    file); returns where it went."""
    if not is_s3_uri(settings.landing):
        target = Path(settings.landing) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)
    loc = S3Location.parse(settings.landing).child(name)
    try:
        client(settings).fput_object(loc.bucket, loc.key, str(source))
    except Exception as exc:  # noqa: BLE001
        raise _bucket_error(settings, exc, loc.bucket) from exc
    return loc.uri()


def landed(settings: Settings, name: str) -> bool:
    """Whether ``name`` is in the landing area."""
    if not is_s3_uri(settings.landing):
        return (Path(settings.landing) / name).exists()
    from minio.error import S3Error

    loc = S3Location.parse(settings.landing).child(name)
    try:
        client(settings).stat_object(loc.bucket, loc.key)
        return True
    except S3Error as exc:
        if exc.code in MISSING:
            return False
        raise _bucket_error(settings, exc, loc.bucket) from exc


@contextmanager
def landing_file(settings: Settings, name: str) -> Iterator[Path]:
    """A local path to ``<landing>/name``: the file itself, or a temporary download of the object."""
    if not is_s3_uri(settings.landing):
        yield Path(settings.landing) / name
        return
    from minio.error import S3Error

    loc = S3Location.parse(settings.landing).child(name)
    with tempfile.TemporaryDirectory(prefix="apparel-landing-") as tmp:
        target = Path(tmp) / Path(name).name
        try:
            client(settings).fget_object(loc.bucket, loc.key, str(target))
        except S3Error as exc:
            if exc.code in MISSING:
                raise SourceError(f"workbook not found: {loc.uri()}") from exc
            raise _bucket_error(settings, exc, loc.bucket) from exc
        yield target


def delta_tables(settings: Settings, names: list[str], paths: dict[str, str]) -> list[str]:
    """Which of ``names`` (at ``paths``, s3a URIs) hold a Delta table: a ``_delta_log/`` object exists. Uses the
    S3 API only, no Spark."""
    mc = client(settings)
    found = []
    for name in names:
        loc = S3Location.parse(paths[name]).child("_delta_log")
        if next(iter(mc.list_objects(loc.bucket, prefix=loc.key + "/")), None) is not None:
            found.append(name)
    return found


def remove_prefix(settings: Settings, uri: str) -> int:
    """Delete every object under ``uri`` (tests and `clean` helpers); returns how many."""
    from minio.deleteobjects import DeleteObject

    loc = S3Location.parse(uri)
    mc = client(settings)
    objs = [DeleteObject(o.object_name) for o in mc.list_objects(loc.bucket, prefix=loc.key, recursive=True)]
    errors = list(mc.remove_objects(loc.bucket, objs)) if objs else []
    if errors:
        raise SetupError(f"could not delete {len(errors)} object(s) under {uri}: {errors[0]}")
    return len(objs)
