"""Least privilege on the store database (README "Least privilege"): the project's PostgreSQL (scripts/postgres.sh)
has an owner role that seeds the store and a read-only role that the extraction uses. What the read-only role
may do is tried on the real server: it reads every store table, and every kind of write is refused; bronze
extracts the whole sample with it. Counts come from the sample's files (pandas), not from the pipeline."""

from __future__ import annotations

import uuid

import psycopg
import pytest

import expected_model as em
from apparel.catalog import Catalog
from apparel.errors import SourceError
from apparel.pipeline import run_layers
from apparel.schemas import STORE_TABLES
from apparel.seed import seed_dataset
from apparel.store import StoreDB
from conftest import READ_ROLE, _fresh_postgres_db, quiet, read_url, settings_in

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WRITES = [
    "INSERT INTO customers (customer_id) VALUES (-1)",
    "UPDATE orders SET city_id = 0",
    "DELETE FROM order_details",
    "TRUNCATE products",
    "CREATE TABLE intruder (x int)",
    "DROP TABLE product_categories",
    "ALTER TABLE orders ADD COLUMN note text",
    "CREATE INDEX ix_intruder ON orders (order_date, city_id)",
]


def test_the_extraction_role_reads_the_store_and_cannot_write_it(postgres_server, tmp_path, spark, sample):
    settings = settings_in(tmp_path, _fresh_postgres_db(postgres_server))
    owner, reader = StoreDB(settings.store_db), StoreDB(settings.store_read_db)
    assert (owner.user, reader.user) == ("apparel", READ_ROLE)
    said = []
    seed_dataset(settings, sample, log=said.append)
    assert any(f"the extraction's role {READ_ROLE} may read" in line for line in said), said
    src = em.read_sources(sample)
    with psycopg.connect(settings.store_read_db, autocommit=True) as conn:
        for table in STORE_TABLES:
            assert conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0] == len(src[table.name])
        for statement in WRITES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        role = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication FROM pg_roles "
                            "WHERE rolname = current_user").fetchone()
        assert role == (False, False, False, False)
    # nothing changed, as the owner sees it
    for table in STORE_TABLES:
        assert owner.count(table.name) == len(src[table.name])
    # and bronze extracts every row with it
    run_layers(spark, settings, ["bronze"], log=quiet)
    catalog = Catalog(settings)
    for table in STORE_TABLES:
        assert catalog.read(spark, f"bronze.{table.name}").count() == len(src[table.name]), table.name


def test_seeding_grants_the_extraction_role_where_no_default_does(postgres_server, tmp_path, sample):
    """A database without the default privileges scripts/postgres.sh sets (someone else's server): `apparel seed`
    grants the read-only role SELECT itself; a table it may not read stops the extraction with a clear error."""
    # unique on a server that outlives the run (its data folder is the checkout's, under /var/tmp)
    name = f"t_bare_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_server.rsplit("/", 1)[0] + f"/{name}"
    settings = settings_in(tmp_path, url)
    assert settings.store_read_db == read_url(url)
    seed_dataset(settings, sample, log=quiet)
    reader = StoreDB(settings.store_read_db)
    assert reader.count("customers") == len(em.read_sources(sample)["customers"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"REVOKE SELECT ON customers FROM {READ_ROLE}")
    with pytest.raises(SourceError, match=rf"refused role {READ_ROLE}: permission denied for table customers"):
        reader.count("customers")
