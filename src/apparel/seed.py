"""``apparel seed``: load a dataset folder (or the generated sample) into the store database, and put the
operations workbooks into the landing area.

Seeding is idempotent: each store table is replaced in one transaction, and the workbooks are copied over
the previous ones. Every row is loaded as it is; the report says what was loaded per table.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from apparel.config import Settings
from apparel.errors import SourceError
from apparel.objectstore import ensure_buckets, land_file, landed
from apparel.schemas import EXCEL_TABLES, STORE_TABLES
from apparel.sources import frame_rows, read_dataset_file
from apparel.store import StoreDB


@dataclass
class SeedReport:
    source: str
    rows: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def seed_dataset(settings: Settings, folder: Path, log=print, source: str | None = None) -> SeedReport:
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"dataset folder not found: {folder}")
    report = SeedReport(source or str(folder))
    # read and validate everything first, so a bad file leaves the store as it was
    store_frames = {t.name: read_dataset_file(folder, t) for t in STORE_TABLES}
    workbooks = {t.name: read_dataset_file(folder, t, settings.workbooks[t.name]["sheet"]) for t in EXCEL_TABLES}
    ensure_buckets(settings, log=log)  # an S3 landing area: check the store before writing anything
    store = StoreDB(settings.store_db)  # replace_rows creates each table (and its indexes) if missing
    for table in STORE_TABLES:
        result = store_frames[table.name]
        report.rows[table.name] = store.replace_rows(table, frame_rows(result.frame))
        report.warnings += result.warnings
        log(f"  store_db.{table.name:<19} {report.rows[table.name]:>9,} rows")
    reader = store.grant_read(StoreDB(settings.store_read_db), STORE_TABLES)
    if reader:
        log(f"  store_db: the extraction's role {reader} may read the {len(STORE_TABLES)} tables, and only read")
    for table in EXCEL_TABLES:
        spec = settings.workbooks[table.name]
        land_file(settings, spec["file"], folder / table.file)
        report.rows[table.name] = len(workbooks[table.name].frame)
        report.warnings += workbooks[table.name].warnings
        log(f"  landing/{spec['file']:<20} {report.rows[table.name]:>9,} rows")
    for w in report.warnings:
        log(f"  warning: {w}")
    return report


def seed_generated(settings: Settings, scale: float = 1.0, seed: int = 7, log=print) -> SeedReport:
    from apparel.generator import generate

    with tempfile.TemporaryDirectory(prefix="apparel-sample-") as tmp:
        generate(tmp, scale=scale, seed=seed)
        return seed_dataset(settings, Path(tmp), log=log, source=f"generated sample (scale {scale:g}, seed {seed})")


def is_seeded(settings: Settings) -> bool:
    store = StoreDB(settings.store_db)
    try:
        return all(store.table_exists(t.name) for t in STORE_TABLES) and all(
            landed(settings, settings.workbooks[t.name]["file"]) for t in EXCEL_TABLES)
    except SourceError:
        return False
