"""The sharded store: a coordinator PostgreSQL whose ``orders`` and ``order_details`` are hash partitioned by
``order_id`` over N shard servers, each partition a ``postgres_fdw`` foreign table on its shard, so that an order
and all its lines live on one shard and PostgreSQL itself routes every INSERT and COPY sent to the coordinator.
The reference tables (customers, products, product_categories) stay on the coordinator. `apparel seed` and
`apparel simulate` write to the coordinator's URL as to any store (docs/topology.md).

``python -m apparel.shards prepare COORDINATOR_ADMIN_URL SHARD_URL...`` (what scripts/store-shards.sh runs)
creates, idempotently:

- on each shard (as the store's owner role, the shard URL's user): the two tables, plain, with the store's
  columns and indexes (the store enforces no uniqueness: the handed-over data reuses ids; the pipeline's contract
  judges them);
- on the coordinator (the admin URL: a superuser, which a user mapping without a password needs): the
  ``postgres_fdw`` extension, a server per shard (``shard_1``...; libpq multi-host options when a shard URL
  names several hosts, so that a promoted standby is found with no DDL), user mappings for the owner and the
  read-only roles, and, as the owner, the two tables partitioned by ``HASH (order_id)`` with one foreign partition
  per shard.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlparse

from apparel.errors import ConfigError, SourceError
from apparel.schemas import SOURCES
from apparel.store import StoreDB

SHARDED = ("orders", "order_details")  # both by hash of order_id: an order and its lines on one shard
READ_ROLE = "apparel_reader"


def server_options(shard_url: str) -> dict[str, str]:
    """postgres_fdw server options of a shard URL (``postgresql://user@h1:p1,h2:p2/db?...``)."""
    parsed = urlparse(shard_url)
    hosts = parsed.netloc.rsplit("@", 1)[-1]
    pairs = [h.rsplit(":", 1) if ":" in h else (h, "5432") for h in hosts.split(",")]
    opts = {"host": ",".join(h for h, _ in pairs), "port": ",".join(p for _, p in pairs),
            "dbname": unquote(parsed.path.lstrip("/")) or "postgres"}
    if len(pairs) > 1:
        opts["target_session_attrs"] = "read-write"
    return opts


def free_base_port(shards: int = 2, standbys: int = 1) -> int:
    """A free ``APPAREL_STORE_SHARDS_PORT`` for scripts/store-shards.sh (tests, benches): the coordinator's port p
    and those of shard k's node n (p + k + 10 n) and of the monitor (p + 20) all free."""
    import socket

    offsets = [k + 10 * n for k in range(1, shards + 1) for n in range(standbys + 1)] + ([20] if standbys else [])
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + max(offsets) > 65535:
            continue
        try:
            for k in offsets:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports for the sharded store")


def hosts(url: str) -> list[str]:
    """The ``host:port`` entries of a (multi-host) PostgreSQL URL, in order."""
    netloc = urlparse(url).netloc.rsplit("@", 1)[-1]
    return [h if ":" in h else f"{h}:5432" for h in netloc.split(",")]


def single_host(url: str, host: str) -> str:
    """``url`` naming only ``host`` (``host:port``), without ``target_session_attrs`` (one host has one role)."""
    parsed = urlparse(url)
    userinfo = parsed.netloc.rsplit("@", 1)[0] + "@" if "@" in parsed.netloc else ""
    query = urlencode([(k, v) for k, v in parse_qsl(parsed.query) if k != "target_session_attrs"])
    return parsed._replace(netloc=userinfo + host, query=query).geturl()


def writable(url: str) -> str:
    """``url`` for writes: with several hosts, the one that takes them (``target_session_attrs=read-write``)."""
    if len(hosts(url)) < 2:
        return url
    parsed = urlparse(url)
    query = [(k, v) for k, v in parse_qsl(parsed.query) if k != "target_session_attrs"]
    return parsed._replace(query=urlencode(query + [("target_session_attrs", "read-write")])).geturl()


def lsn(text: str) -> int:
    """A WAL position (``16/B374D848``) as a number of bytes."""
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass(frozen=True)
class Reader:
    """Where bronze reads one shard: one node's URL, its role, the standby's lag, and why it is not a standby."""
    shard: str
    url: str
    node: str
    role: str                  # "standby", or "primary" (a shard without standby, or the fallback)
    lag_seconds: float | None  # the standby's replay lag (0: it has replayed all the primary wrote)
    warning: str | None = None


NODE_SQL = ("SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
            "ELSE pg_current_wal_lsn() END::text, EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())")


def probe(url: str, timeout: int = 3) -> tuple[bool, int, float | None]:
    """(in recovery, the WAL position written or replayed, seconds since the last transaction replayed)."""
    import psycopg

    with psycopg.connect(url, connect_timeout=timeout) as conn:
        recovery, position, since = conn.execute(NODE_SQL).fetchone()
    return bool(recovery), lsn(position), None if since is None else float(since)


def pick_reader(shard: str, url: str, max_lag_seconds: float, probe=probe) -> Reader:
    """The node of ``url`` (one shard) that bronze reads: a standby whose replay lag is at most
    ``max_lag_seconds``, else the primary, with a warning saying why. The lag is 0 when the standby has replayed
    everything the primary has written, else the time since the last transaction it replayed."""
    import psycopg

    nodes = hosts(url)
    if len(nodes) == 1:
        return Reader(shard, url, nodes[0], "primary", None)
    primary, standbys, down = None, [], []
    for node in nodes:
        try:
            recovery, position, since = probe(single_host(url, node))
        except psycopg.OperationalError as exc:
            down.append((node, str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"))
            continue
        if recovery:
            standbys.append((node, position, since))
        elif primary is None:
            primary = (node, position)
    if primary is None:
        gone = ", ".join(f"{node} ({why})" for node, why in down) or "none"
        raise SourceError(f"{shard}: no node of {', '.join(nodes)} takes writes (down: {gone}; "
                          "a failover may be under way): nothing was read, re-run once the shard has a primary")
    reasons = [f"node {node} is down ({why})" for node, why in down]
    for node, position, since in standbys:
        lag = 0.0 if position >= primary[1] else (since if since is not None else float("inf"))
        if lag <= max_lag_seconds:
            return Reader(shard, single_host(url, node), node, "standby", round(lag, 1))
        reasons.append(f"standby {node} lags {lag:.0f} s")
    why = "; ".join(reasons) or "no standby answers as one"
    return Reader(shard, single_host(url, primary[0]), primary[0], "primary", None,
                  f"{shard}: {why}: reading the primary {primary[0]} (bronze.standby_max_lag_seconds: "
                  f"{max_lag_seconds:g} s)")


def _user(url: str) -> str:
    user = urlparse(url).username
    if not user:
        raise ConfigError(f"{StoreDB(url).redacted}: the URL names no user")
    return unquote(user)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def partition_name(table: str, index: int) -> str:
    return f"{table}_shard_{index + 1}"


def coordinator_ddl(owner: str, shard_urls: list[str], existing_servers: set[str]) -> list[str]:
    """The coordinator's statements for ``shard_urls``, run by a superuser; the tables' part runs as ``owner``."""
    n = len(shard_urls)
    stmts = ["CREATE EXTENSION IF NOT EXISTS postgres_fdw"]
    for i, url in enumerate(shard_urls):
        server, opts = f"shard_{i + 1}", server_options(url)
        if server in existing_servers:
            sets = ", ".join(f"SET {k} {_quote(v)}" for k, v in opts.items() if k != "target_session_attrs")
            stmts.append(f"ALTER SERVER {server} OPTIONS ({sets})")
        else:
            listed = ", ".join(f"{k} {_quote(v)}" for k, v in opts.items())
            stmts.append(f"CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw OPTIONS ({listed}, "
                         f"async_capable 'true', batch_size '1000')")
        remote = _user(url)
        for role in (owner, READ_ROLE, "postgres"):
            # trust authentication on the local shards: only a superuser may map without a password
            stmts.append(f"CREATE USER MAPPING IF NOT EXISTS FOR {role} SERVER {server} "
                         f"OPTIONS (user {_quote(remote if role == owner else role)}, password_required 'false')")
        stmts.append(f"GRANT USAGE ON FOREIGN SERVER {server} TO {owner}")
    stmts.append(f"SET ROLE {owner}")
    for name in SHARDED:
        table = SOURCES[name]
        cols = ", ".join(f"{c.name} {c.type.upper()}" for c in table.columns)
        stmts.append(f"CREATE TABLE IF NOT EXISTS {name} ({cols}) PARTITION BY HASH (order_id)")
        for i in range(n):
            stmts.append(f"CREATE FOREIGN TABLE IF NOT EXISTS {partition_name(name, i)} PARTITION OF {name} "
                         f"FOR VALUES WITH (MODULUS {n}, REMAINDER {i}) SERVER shard_{i + 1} "
                         f"OPTIONS (table_name {_quote(name)})")
    stmts.append("RESET ROLE")
    return stmts


def layout(admin: StoreDB) -> dict[str, tuple[str, int]]:
    """How the coordinator holds each sharded table: ``{table: (kind, partitions)}``, kind ``p`` (partitioned),
    ``r`` (plain) or absent."""
    rows = admin.query(
        "SELECT c.relname, c.relkind, (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname = ANY(%s)", (list(SHARDED),))
    return {r[0]: (r[1], int(r[2])) for r in rows}


def prepare(admin_url: str, shard_urls: list[str], log=print) -> None:
    """Create the sharded layout (the module's docstring); refuses a coordinator whose tables are already laid
    out otherwise (plain tables, or another number of shards): resharding is not something this does."""
    if len(shard_urls) < 2:
        raise ConfigError("a sharded store needs at least 2 shards")
    admin = StoreDB(admin_url)
    owner = _user(shard_urls[0])  # the store's owner role, the same on every server
    for name, (kind, parts) in layout(admin).items():
        if kind != "p":
            raise ConfigError(f"the coordinator already holds a plain {name} table: a sharded store starts from "
                              "an empty coordinator (drop it, or use another database)")
        if parts != len(shard_urls):
            raise ConfigError(f"the coordinator's {name} is partitioned over {parts} shard(s), not "
                              f"{len(shard_urls)}: resharding is not supported")
    for i, url in enumerate(shard_urls):
        StoreDB(writable(url)).create_schema([SOURCES[n] for n in SHARDED])
        log(f"[shards] shard {i + 1}: {', '.join(SHARDED)} ready on {StoreDB(url).redacted}")
    servers = {r[0] for r in admin.query("SELECT srvname FROM pg_foreign_server")}
    with admin.connect() as conn:
        cur = conn.cursor()
        for stmt in coordinator_ddl(owner, shard_urls, servers):
            cur.execute(stmt)
    log(f"[shards] coordinator {admin.redacted}: {', '.join(SHARDED)} hash partitioned by order_id over "
        f"{len(shard_urls)} shards")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[0] != "prepare":
        print("usage: python -m apparel.shards prepare COORDINATOR_ADMIN_URL SHARD_URL...", file=sys.stderr)
        return 2
    try:
        prepare(argv[1], argv[2:], log=lambda m: print(m, file=sys.stderr))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
