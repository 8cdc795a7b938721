"""Bring Superset's metadata in line with the project, idempotently (scripts/superset.sh runs it at each start,
with Superset's own virtualenv, after `superset db upgrade` and `superset init`):

1. the admin user, whose password is $SUPERSET_ADMIN_PASSWORD (set again at each run: the environment wins);
2. the assets of superset/assets/ (database, datasets, charts, dashboards, as Superset's YAML export format),
   imported with Superset's assets importer, which overwrites by UUID: a re-import never duplicates;
   the database's sqlalchemy_uri is replaced by --trino-uri;
3. the read-only ``Viewer`` role: what Gamma may read, minus every write, SQL Lab and the rest of Superset,
   plus access to the datasets of the assets only, so the dashboards it can open are these;
4. a viewer user with that role when $SUPERSET_VIEWER_PASSWORD is set ($SUPERSET_VIEWER_USER, default viewer).

    python superset/bootstrap.py --assets superset/assets --trino-uri trino://apparel@127.0.0.1:8090/lakehouse/gold

Prints one JSON line: the numbers of dashboards, charts and datasets in Superset after the import.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

VIEWER_ROLE = "Viewer"
# Gamma's permissions that change something; the Viewer keeps none of them...
WRITE_PERMISSIONS = ("can_write", "can_delete", "can_add", "can_edit", "can_post", "can_put", "can_import",
                     "can_export", "can_copy_dash", "can_save_dash", "can_tag", "can_upload", "can_csv",
                     "muldelete", "can_share", "can_set", "can_invalidate", "can_warm_up_cache", "can_request_access",
                     "can_approve", "can_override_role_permissions", "can_activate", "can_migrate_query")
# ...except the dashboard's own view state (filter state and permalinks), which edit no asset
VIEW_STATE = {("can_write", "DashboardFilterStateRestApi"), ("can_write", "DashboardPermalinkRestApi")}
# and nothing of SQL Lab, saved queries, the database list or the query history
HIDDEN_VIEWS = {"SQLLab", "SQL Lab", "SQL Editor", "Saved Queries", "Query Search", "SavedQuery", "Query",
                "TabStateView", "TableSchemaView", "SqlLabPermalinkRestApi", "Database", "Databases",
                "Row Level Security", "Tags", "Tag"}


def require_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"bootstrap: set {name}; there is no default")
    return value


def read_assets(folder: Path, trino_uri: str) -> dict[str, str]:
    """{path inside the bundle: YAML text}, the database's URI replaced."""
    import yaml

    contents = {}
    for path in sorted(folder.rglob("*.yaml")):
        rel = path.relative_to(folder).as_posix()
        text = path.read_text()
        if rel.startswith("databases/"):
            config = yaml.safe_load(text)
            config["sqlalchemy_uri"] = trino_uri
            text = yaml.safe_dump(config, sort_keys=False)
        contents[rel] = text
    if "metadata.yaml" not in contents:
        sys.exit(f"bootstrap: {folder}/metadata.yaml is missing")
    return contents


def ensure_user(sm, username: str, role_name: str, password: str, email: str):
    from superset import db

    role = sm.find_role(role_name)
    user = sm.find_user(username=username)
    if user is None:
        user = sm.add_user(username, username.capitalize(), "Apparel", email, role, password=password)
        if not user:
            sys.exit(f"bootstrap: could not create the user {username}")
    else:
        sm.reset_password(user.id, password)
        user.roles = [role]
        user.active = True
        db.session.commit()
    return user


def viewer_permissions(sm, dataset_perms: list[str]):
    gamma = sm.find_role("Gamma")
    keep = []
    for pvm in gamma.permissions:
        perm, view = pvm.permission.name, pvm.view_menu.name
        if (perm, view) not in VIEW_STATE and (perm.startswith(WRITE_PERMISSIONS) or view in HIDDEN_VIEWS):
            continue
        keep.append(pvm)
    for view in ("DashboardFilterStateRestApi", "DashboardPermalinkRestApi"):
        pvm = sm.find_permission_view_menu("can_write", view)
        if pvm is not None and pvm not in keep:
            keep.append(pvm)
    for perm in dataset_perms:
        keep.append(sm.add_permission_view_menu("datasource_access", perm))
    return keep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, required=True)
    parser.add_argument("--trino-uri", required=True)
    args = parser.parse_args(argv)

    admin_user = os.environ.get("SUPERSET_ADMIN_USER") or "admin"
    admin_password = require_env("SUPERSET_ADMIN_PASSWORD")
    contents = read_assets(args.assets, args.trino_uri)

    from superset.app import create_app

    app = create_app()
    with app.app_context():
        import yaml
        from superset import db
        from superset import security_manager as sm
        from superset.commands.importers.v1.assets import ImportAssetsCommand
        from superset.connectors.sqla.models import SqlaTable
        from superset.models.dashboard import Dashboard
        from superset.models.slice import Slice
        from superset.utils.core import override_user

        admin = ensure_user(sm, admin_user, "Admin", admin_password,
                            os.environ.get("SUPERSET_ADMIN_EMAIL") or "admin@apparel.invalid")
        with override_user(admin):
            ImportAssetsCommand(contents).run()

        dataset_uuids = [yaml.safe_load(text)["uuid"] for rel, text in contents.items()
                         if rel.startswith("datasets/")]
        datasets = db.session.query(SqlaTable).filter(SqlaTable.uuid.in_(dataset_uuids)).all()
        if len(datasets) != len(dataset_uuids):
            sys.exit(f"bootstrap: {len(dataset_uuids)} datasets in the assets, {len(datasets)} after the import")
        role = sm.find_role(VIEWER_ROLE) or sm.add_role(VIEWER_ROLE)
        role.permissions = viewer_permissions(sm, [d.perm for d in datasets])
        db.session.commit()

        viewer_password = os.environ.get("SUPERSET_VIEWER_PASSWORD")
        if viewer_password:
            ensure_user(sm, os.environ.get("SUPERSET_VIEWER_USER") or "viewer", VIEWER_ROLE, viewer_password,
                        "viewer@apparel.invalid")
        print(json.dumps({"dashboards": db.session.query(Dashboard).count(),
                          "charts": db.session.query(Slice).count(),
                          "datasets": db.session.query(SqlaTable).count(),
                          "viewer_permissions": len(role.permissions)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
