"""The ``apparel`` command line.

    apparel seed [--dataset DIR | --scale N [--seed S]]   load the store database and the landing area
    apparel run [--layers bronze,...] [--dataset DIR] [--full-refresh] [--accept-shrink TABLE]
                                                          the main job (seeds the sample if the store is empty)
    apparel query "SQL"                                   Spark SQL over the lakehouse tables (bronze.orders, ...)
    apparel sql "SQL"                                     Trino SQL over the lakehouse (lakehouse.gold.dm_..., ...)
    apparel register                                      register the s3a:// lakehouse's tables in Trino
    apparel status                                        rows, Delta version and last batch of every table
    apparel maintain [--retention-hours H]                OPTIMIZE and VACUUM every table
    apparel cdc prepare|register|status|drop|reset        change data capture (the Debezium connector)
    apparel stream start|stop|status|run [--json]         the streaming query (change events -> silver, live mart)
    apparel jars                                          resolve and print the cached JVM jars
    apparel cds [--rebuild]                               build the Spark driver's class archive (faster starts)
    apparel simulate --rate N --duration S [--updates P --deletes Q] [--seed S] [--log FILE] [--json]
                                                          place orders into the PostgreSQL store now, and report

A failure exits non-zero with a one-line reason; ``--debug`` (or APPAREL_DEBUG=1) shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from apparel.config import Settings, load_settings
from apparel.runtime import fraction, hours, one_line_error, parse_run_date, positive

_STARTED = time.monotonic()


def log(msg: str) -> None:
    """Progress line, prefixed with the seconds since the command started."""
    print(f"{time.monotonic() - _STARTED:6.1f}s {msg}", flush=True)


def _settings(args) -> Settings:
    return load_settings(env=getattr(args, "env", None))


def check_object_store(settings: Settings) -> None:
    """When the lakehouse or the landing area is on S3: check the endpoint and keys and create the buckets,
    before anything is written."""
    from apparel.objectstore import ensure_buckets, project_buckets

    if project_buckets(settings):
        ensure_buckets(settings, log=log)
        log(f"[s3] {settings.s3['endpoint']}: bucket(s) {', '.join(project_buckets(settings))} ready")


# --- commands -------------------------------------------------------------------------------------

def cmd_seed(args) -> int:
    from apparel.seed import seed_dataset, seed_generated

    settings = _settings(args)
    started = time.monotonic()
    check_object_store(settings)
    if args.dataset:
        log(f"seeding {settings.store_db if 'sqlite' in settings.store_db else 'PostgreSQL'} from {args.dataset}")
        report = seed_dataset(settings, Path(args.dataset), log=log)
    else:
        log(f"seeding the generated sample (scale {args.scale:g}, seed {args.seed})")
        report = seed_generated(settings, scale=args.scale, seed=args.seed, log=log)
    log(f"seeded {sum(report.rows.values()):,} rows in {len(report.rows)} tables "
        f"from {report.source} in {time.monotonic() - started:.1f}s")
    return 0


def cmd_run(args) -> int:
    from apparel.pipeline import parse_layers, run_layers, summary_lines
    from apparel.runlog import batch_run
    from apparel.seed import is_seeded, seed_dataset, seed_generated
    from apparel.spark import get_spark

    settings = _settings(args)
    layers = parse_layers(args.layers)
    started = time.monotonic()
    check_object_store(settings)
    with batch_run(settings, "run", layers, log=log) as run:
        if args.dataset:
            log(f"[seed] loading {args.dataset}")
            seed_dataset(settings, Path(args.dataset), log=log)
        elif "bronze" in layers and not is_seeded(settings):
            log("[seed] the store database is empty: seeding the generated sample (scale 1)")
            seed_generated(settings, log=log)
        log(f"[spark] starting ({settings.spark['master']}); lakehouse {settings.lakehouse}; run {run.run_id}")
        spark = get_spark(settings)
        run.begin(spark)
        summary = run_layers(spark, settings, layers, log=log, run_date=parse_run_date(args.run_date),
                             full_refresh=args.full_refresh, between=run.check, accept_shrink=args.accept_shrink)
        log(f"done in {time.monotonic() - started:.1f}s")
        for line in summary_lines(summary, layers):
            print(f"  {line}")
        if settings.on_s3 and settings.trino.get("url"):
            register_in_trino(settings)
        if "gold" in layers:
            from apparel.report import make_report

            report_id = summary.get("silver_run_id") or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            path, lines = make_report(spark, settings, report_id, summary.get("silver_run_id"))
            for line in lines:
                print(f"  {line}")
            print(f"report: {path}")
    return 0


def register_in_trino(settings: Settings) -> None:
    """After a run on an s3a:// lakehouse: make new tables visible to Trino, or say why they are not."""
    from apparel.trino_catalog import reachable, register_tables

    if not reachable(settings):
        log(f"[trino] not reachable at {settings.trino['url']}: tables not registered "
            "(start it with `make services-up`, then `apparel register`)")
        return
    register_tables(settings, log=log)


def print_frame(pdf, truncated: bool) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
        print(pdf.to_string(index=False) if len(pdf) else "(no rows)")
    print(f"({len(pdf)} row{'s' if len(pdf) != 1 else ''}{', truncated' if truncated else ''})")


def cmd_query(args) -> int:
    from apparel.query import run_query

    print_frame(*run_query(_settings(args), args.sql, limit=args.limit))
    return 0


def cmd_sql(args) -> int:
    from apparel.trino_catalog import run_sql

    print_frame(*run_sql(_settings(args), args.sql, limit=args.limit))
    return 0


def cmd_register(args) -> int:
    from apparel.trino_catalog import register_tables

    register_tables(_settings(args), log=log)
    return 0


def cmd_status(args) -> int:
    from apparel.pipeline import table_status
    from apparel.runlock import current_holder, describe
    from apparel.runlog import RUN_LOG, last_runs
    from apparel.spark import get_spark

    settings = _settings(args)
    spark = get_spark(settings)
    rows = table_status(spark, settings)
    print(f"lakehouse: {settings.lakehouse}")
    print(f"{'table':<32} {'rows':>10} {'version':>8}  {'last batch':<24} updated")
    for r in rows:
        if r["rows"] is None:
            print(f"{r['table']:<32} {'-':>10} {'-':>8}  {'(not created yet)':<24}")
        else:
            print(f"{r['table']:<32} {r['rows']:>10,} {r['version']:>8}  {str(r['last_batch'] or '-'):<24} "
                  f"{r['updated']}")
    holder = current_holder(settings)
    print(f"\nrun lock: {'free' if holder is None else 'held by ' + describe(holder)}")
    runs = last_runs(spark, settings)
    print(f"last runs ({RUN_LOG}, newest first):" if runs else f"no run recorded in {RUN_LOG} yet")
    for r in runs:
        ended = f"{r['ended_at']:%Y-%m-%d %H:%M:%S}" if r["ended_at"] else "-"
        print(f"  {r['run_id']:<24} {r['trigger']:<34} {r['command']:<9} {r['started_at']:%Y-%m-%d %H:%M:%S}  "
              f"{ended:<19}  {r['status']}" + (f": {r['error']}" if r["error"] else ""))
    return 0


def cmd_maintain(args) -> int:
    from apparel.jobs.maintain import Maintenance
    from apparel.runlog import batch_run
    from apparel.spark import get_spark

    settings = _settings(args)
    check_object_store(settings)
    with batch_run(settings, "maintain", [], log=log) as run:
        log(f"[spark] starting ({settings.spark['master']}); lakehouse {settings.lakehouse}; run {run.run_id}")
        spark = get_spark(settings)
        run.begin(spark)
        Maintenance(spark, settings, log=log, retention_hours=args.retention_hours).run()
    return 0


def cmd_jars(args) -> int:
    from apparel.jars import jars_for

    for jar in jars_for(_settings(args), log=lambda m: print(m, file=sys.stderr, flush=True)):
        print(jar)
    return 0


def cmd_cds(args) -> int:
    from apparel import cds

    settings = _settings(args)
    if not cds.enabled(settings):
        print("class data sharing is off (spark.class_data_sharing: false): nothing to build", file=sys.stderr)
        return 0
    print(cds.build(settings, getattr(args, "env", None), rebuild=args.rebuild,
                    log=lambda m: print(m, file=sys.stderr, flush=True)))
    return 0


def cmd_cdc(args) -> int:
    from apparel import cdc

    settings = _settings(args)
    if args.action == "prepare":
        cdc.prepare_source(settings, log=log)
    elif args.action == "register":
        cdc.register(settings, log=log)
    elif args.action == "drop":
        cdc.drop(settings, log=log)
    elif args.action == "reset":
        cdc.reset(settings, log=log)
    else:
        st = cdc.status(settings)
        if st is None:
            print(f"connector {settings.cdc.topic_prefix}: not registered")
            return 3
        tasks = ", ".join(f"task {t['id']} {t['state']}" for t in st.get("tasks", []))
        print(f"connector {settings.cdc.topic_prefix}: {st['connector']['state']} ({tasks or 'no task'})")
        return 0 if tasks and all(t["state"] == "RUNNING" for t in st["tasks"]) else 3
    return 0


def cmd_stream(args) -> int:
    from apparel import stream

    settings = _settings(args)
    if args.action in ("run", "start") and settings.cdc.enabled:
        from apparel.cdc import refuse_shards

        refuse_shards(settings)
    if args.action == "run":
        from apparel.jobs.stream import main_loop

        if not settings.cdc.enabled:
            raise SystemExit("error: change data capture is off: set APPAREL_CDC=1 (README \"Real-time path\")")
        return main_loop(settings, log=log)
    if args.action == "start":
        if not settings.cdc.enabled:
            raise SystemExit("error: change data capture is off: set APPAREL_CDC=1 (README \"Real-time path\")")
        stream.start(settings, log=log, env=getattr(args, "env", None))
        return 0
    if args.action == "stop":
        stream.stop(settings, log=log)
        return 0
    st = stream.status(settings)
    if args.json:
        print(json.dumps(st, default=str, indent=1))
    else:
        print(f"stream: {'running (pid ' + str(st['pid']) + ')' if st['running'] else 'not running'}")
        print(f"  last batch    {st['batch_id']} at {st['batch_finished_at']} ({st['batch_seconds']} s)")
        print(f"  last events   batch {st['last_events_batch']}: {st['last_events']}")
        if st.get("last_seconds"):  # where that batch's time went, step by step
            print("  its steps     " + ", ".join(f"{k} {v} s" for k, v in st["last_seconds"].items()))
        print(f"  lag           {st['lag_messages']} message(s), {st['lag_seconds']} s since the newest event"
              + (f" ({st['lag_error']})" if st.get("lag_error") else ""))
        print(f"  silver        applied up to batch {st['silver_upto']} at {st['silver_finished_at']} "
              f"({st['silver_seconds']} s){'; a run is under way' if st.get('silver_running') else ''}"
              + (f"; FAILED: {st['silver_error']}" if st.get("silver_error") else ""))
        print(f"  checkpoint    {st['checkpoint']}")
        print(f"  log           {st['log']}")
    return 0 if st["running"] else 3


def cmd_simulate(args) -> int:
    from apparel.simulate import report_lines, simulate

    settings = _settings(args)
    progress = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else log
    report = simulate(settings.store_db, rate=args.rate, duration=args.duration, updates=args.updates,
                      deletes=args.deletes, seed=args.seed, log_path=args.log, progress=progress)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for line in report_lines(report):
            print(line)
    return 130 if report["interrupted"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apparel", description="Django Apparel lakehouse")
    parser.add_argument("--env", default=None, help="settings environment (conf/<env>.yaml; default local)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("seed", help="load a dataset (or the generated sample) into the store and landing area")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", help="folder with the 7 source files")
    src.add_argument("--scale", type=float, default=1.0, help="generated sample size (1 = 7,000 orders)")
    p.add_argument("--seed", type=int, default=7, help="generator seed")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("run", help="run the pipeline (bronze -> silver -> gold)")
    p.add_argument("--layers", help="comma-separated layers to run (default: all)")
    p.add_argument("--dataset", help="seed this dataset folder first")
    p.add_argument("--run-date", help="logical date (YYYY-MM-DD): the SCD2 effective date; default today (UTC)")
    p.add_argument("--full-refresh", action="store_true",
                   help="rebuild silver and gold from all of bronze instead of processing only what is new")
    p.add_argument("--accept-shrink", action="append", default=[], metavar="TABLE",
                   help="land this master snapshot (customers, products, ...) even if it lacks more of bronze's keys "
                        "than bronze.snapshot_max_loss_percent (a real deletion); repeatable")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("query", help="Spark SQL over the lakehouse tables, e.g. \"SELECT count(*) FROM bronze.orders\"")
    p.add_argument("sql")
    p.add_argument("--limit", type=int, default=1000, help="most rows to print")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("sql", help="Trino SQL over the lakehouse, "
                                   "e.g. \"SELECT sum(revenue) FROM gold.dm_sales_monthly\"")
    p.add_argument("sql")
    p.add_argument("--limit", type=int, default=1000, help="most rows to print")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("register", help="register the s3a:// lakehouse's Delta tables in Trino (idempotent)")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("status", help="rows, Delta version and last batch of every table")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("maintain", help="OPTIMIZE and VACUUM every lakehouse table (compaction, old files)")
    p.add_argument("--retention-hours", type=hours, default=None,
                   help="keep the files of versions younger than this (default: maintenance.retention_hours, 168)")
    p.set_defaults(func=cmd_maintain)

    p = sub.add_parser("cdc", help="change data capture: prepare the store, register, show or drop the Debezium "
                                   "connector (README \"Real-time path\")")
    p.add_argument("action", choices=["prepare", "register", "status", "drop", "reset"],
                   help="prepare: publication, replica identity, grants; register: put the connector to Kafka "
                        "Connect; status: its state (exit 3 unless running); drop: connector, slot and topics; "
                        "reset: drop, remove the events tables and the checkpoint, register (a new snapshot)")
    p.set_defaults(func=cmd_cdc)

    p = sub.add_parser("stream", help="the streaming query: change events -> bronze.cdc_* -> silver -> "
                                      "gold.dm_sales_live (README \"Real-time path\")")
    p.add_argument("action", choices=["start", "stop", "status", "run"],
                   help="start: in the background; stop: finish the batch and stop; status: running, last batch, "
                        "lag (exit 3 when down); run: in the foreground")
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("jars", help="resolve the JVM jars into the cache and print their paths")
    p.set_defaults(func=cmd_jars)

    p = sub.add_parser("cds", help="build the Spark driver's class archive for this class path and Java, once "
                                   "(later sessions start faster from it), and print its path")
    p.add_argument("--rebuild", action="store_true", help="build it again even if it exists")
    p.set_defaults(func=cmd_cds)

    p = sub.add_parser("simulate", help="place realistic orders into the PostgreSQL store now, at a steady rate, "
                                        "and report what was done (to drive and check the real-time path)")
    p.add_argument("--rate", type=positive, default=10.0, help="orders per second (default 10)")
    p.add_argument("--duration", type=positive, default=60.0, help="seconds to run (default 60)")
    p.add_argument("--updates", type=fraction, default=0.0,
                   help="share of the orders (0..1) after which the qty of one of the run's recent lines changes")
    p.add_argument("--deletes", type=fraction, default=0.0,
                   help="share of the orders (0..1) after which one of the run's recent lines is deleted")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a new one, shown in the report)")
    p.add_argument("--log", help="write one JSON line per committed order, update and delete to this file")
    p.add_argument("--json", action="store_true", help="print the final report as JSON (progress goes to stderr)")
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("APPAREL_DEBUG") == "1"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's contract is a one-line reason
        if debug:
            traceback.print_exc()
        print(f"error: {one_line_error(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
