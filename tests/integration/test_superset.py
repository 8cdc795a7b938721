"""The dashboards in a real browser: Superset, Trino and the object store started by scripts/services.sh, the
assets imported at Superset's start, the gold marts of the shared dataset registered in Trino; Debian's
headless Chromium (driven by Playwright) logs in, opens every dashboard, waits for every chart, and saves a
screenshot of each in artifacts/superset/. Numbers shown are compared with pandas over the source files."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

import expected_model as em
from apparel.config import PROJECT_ROOT

pytestmark = [pytest.mark.services, pytest.mark.slow]

ASSETS = PROJECT_ROOT / "superset" / "assets"
ARTIFACTS = PROJECT_ROOT / "artifacts" / "superset"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def assets(kind: str) -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((ASSETS / kind).rglob("*.yaml"))]


def charts_on(dashboard: dict) -> set[str]:
    return {v["meta"]["uuid"] for v in dashboard["position"].values()
            if isinstance(v, dict) and v.get("type") == "CHART"}


def api_session(stack, who: str) -> requests.Session:
    """A logged-in session (JWT bearer plus the CSRF token the write endpoints want)."""
    user, password = stack[who]
    s = requests.Session()
    r = s.post(f"{stack['url']}/api/v1/security/login",
               json={"username": user, "password": password, "provider": "db", "refresh": False}, timeout=60)
    r.raise_for_status()
    s.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    r = s.get(f"{stack['url']}/api/v1/security/csrf_token/", timeout=60)
    r.raise_for_status()
    s.headers.update({"X-CSRFToken": r.json()["result"], "Referer": stack["url"]})
    return s


def web_session(stack, who: str) -> requests.Session:
    """A session logged in through the login form, as a browser is (the pages use the session cookie)."""
    import re

    user, password = stack[who]
    s = requests.Session()
    form = s.get(f"{stack['url']}/login/", timeout=60).text
    token = re.search(r'name="csrf_token"\s+id="csrf_token"\s+value="([^"]+)"', form)
    r = s.post(f"{stack['url']}/login/", data={"username": user, "password": password, "csrf_token": token.group(1)},
               timeout=60, allow_redirects=False)
    assert r.status_code == 302 and "/login" not in r.headers["Location"], (r.status_code, r.headers)
    return s


def browser_login(page, base: str, user: str, password: str, tries: int = 3) -> None:
    """Log in through the login form. The form is drawn by the page's script: fields filled before it has
    loaded are drawn again empty (seen once on a loaded CI machine: the click posted nothing and the page stayed
    on /login for the whole timeout), so wait for it to settle, and try again, saying what the page showed."""
    shown = ""
    for attempt in range(1, tries + 1):
        page.goto(f"{base}/login/")
        page.wait_for_load_state("networkidle")
        page.fill("[data-test=username-input]", user)
        page.fill("[data-test=password-input]", password)
        page.click("[data-test=login-button]")
        try:
            page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
            return
        except Exception:  # noqa: BLE001 - still on the login page: note what it shows, and try again
            shown = page.locator("body").inner_text()[:500]
            page.screenshot(path=str(ARTIFACTS / f"login-try-{attempt}.png"))
    raise AssertionError(f"the login form did not log {user} in after {tries} tries; the page shows: {shown!r}")


def listed(session: requests.Session, stack, kind: str) -> list[dict]:
    r = session.get(f"{stack['url']}/api/v1/{kind}/", params={"q": "(page_size:100)"}, timeout=60)
    r.raise_for_status()
    return r.json()["result"]


@pytest.fixture(scope="module")
def expected(shared_dataset):
    src = em.read_sources(shared_dataset)
    facts = em.fact_lines(src)
    # Today (live): gold.dm_sales_live at the dataset's last order time; "today" is the day of its latest minute
    # not later than the current time
    live = em.sales_live(facts, src["orders"]["order_date"].max())
    day = live.loc[live["minute"] <= pd.Timestamp.now("UTC").tz_localize(None), "minute"].max().normalize()
    today = live[live["minute"] >= day]
    return {"revenue": int(facts["revenue"].sum()), "orders": int(facts["order_id"].nunique()),
            "units": int(facts["qty"].sum()), "live_now": src["orders"]["order_date"].max(),
            "today": {k: int(today[k].sum()) for k in ("orders", "units", "revenue")}}


def test_every_dashboard_renders_in_chromium_without_chart_errors(stack, gold_in_trino, spark, expected):
    from playwright.sync_api import sync_playwright
    from pyspark.sql import functions as F

    dashboards = assets("dashboards")
    assert [d["slug"] for d in dashboards] == ["basket", "customers", "products", "regions", "sales-overview",
                                               "today-live"]
    gold_revenue = gold_in_trino["catalog"].read(spark, "gold.dm_sales_monthly").agg(F.sum("revenue")).collect()[0][0]
    assert gold_revenue == expected["revenue"]
    # the live mart was built at the dataset's last order time, so Today (live) has minutes to draw
    assert gold_in_trino["local"].live_now == expected["live_now"]
    assert gold_in_trino["catalog"].read(spark, "gold.dm_sales_live").count() > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = stack["url"]
    shown = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1400})
        page.set_default_timeout(120_000)
        browser_login(page, base, *stack["admin"])
        for dash in dashboards:
            responses = []
            handler = lambda r: responses.append(r) if "/api/v1/chart/data" in r.url else None  # noqa: E731
            page.on("response", handler)
            started = time.monotonic()
            page.goto(f"{base}/superset/dashboard/{dash['slug']}/")
            n = len(charts_on(dash))
            # every chart holder has its chart, and nothing is loading any more
            page.wait_for_function(
                """n => document.querySelectorAll('[data-test=chart-grid-component] .chart-container').length >= n
                     && document.querySelectorAll(
                          '[data-test=dashboard-component-chart-holder] .loading').length == 0""",
                arg=n)
            page.wait_for_load_state("networkidle")
            page.remove_listener("response", handler)
            bodies = [r.json() for r in responses]
            assert [r.status for r in responses] == [200] * len(responses), dash["slug"]
            # a dashboard that refreshes itself may have queried again by now
            refreshes = dash["metadata"].get("refresh_frequency", 0) > 0
            assert len(responses) == n or (refreshes and len(responses) > n), \
                f"{dash['slug']}: {len(responses)} chart queries for {n} charts"
            for body in bodies:
                for result in body["result"]:
                    assert result.get("error") is None and result["status"] == "success", result.get("error")
            errors = page.locator("[data-test=chart-grid-component] [role=alert], "
                                  "[data-test=chart-grid-component] .ant-alert-error")
            assert errors.count() == 0, [errors.nth(i).inner_text() for i in range(errors.count())]
            page.wait_for_timeout(1500)  # the charts' draw-in animations, so the screenshot shows whole lines
            page.screenshot(path=str(ARTIFACTS / f"{dash['slug']}.png"), full_page=True)
            print(f"{dash['slug']}: {n} charts in {time.monotonic() - started:.1f}s")
            if refreshes:  # the page refreshes itself: within one period and a bit, every chart queries again
                again = []
                page.on("response", collect := lambda r: again.append(r) if "/api/v1/chart/data" in r.url else None)
                # within one period every chart queries again; on a busy machine a response can come a few seconds
                # later (CI once saw 5 of 6 after the period and 3 s), so wait for all of them, 30 s more at most
                deadline = time.monotonic() + dash["metadata"]["refresh_frequency"] + 30
                while len(again) < n and time.monotonic() < deadline:
                    page.wait_for_timeout(500)
                page.remove_listener("response", collect)
                assert len(again) >= n and {r.status for r in again} == {200}, (len(again), n)
            kpis = {"sales-overview": ("Revenue", "Orders", "Units sold"),
                    "today-live": ("Revenue today", "Orders today", "Units today")}.get(dash["slug"], ())
            for name in kpis:
                shown[name] = page.locator(
                    f"[data-test=chart-grid-component][data-test-chart-name='{name}'] .header-line").inner_text()
        browser.close()
    today = expected["today"]
    assert shown == {"Revenue": f"{expected['revenue']:,}", "Orders": f"{expected['orders']:,}",
                     "Units sold": f"{expected['units']:,}", "Revenue today": f"{today['revenue']:,}",
                     "Orders today": f"{today['orders']:,}", "Units today": f"{today['units']:,}"}
    assert all((ARTIFACTS / f"{d['slug']}.png").stat().st_size > 20_000 for d in dashboards)


def test_reimporting_the_assets_duplicates_nothing(stack):
    admin = api_session(stack, "admin")
    before = {k: sorted((x["id"], x.get("dashboard_title") or x.get("slice_name") or x.get("table_name"))
                        for x in listed(admin, stack, k)) for k in ("dashboard", "chart", "dataset")}
    proc = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "superset.sh"), "import"], env=stack["env"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    after = {k: sorted((x["id"], x.get("dashboard_title") or x.get("slice_name") or x.get("table_name"))
                       for x in listed(admin, stack, k)) for k in ("dashboard", "chart", "dataset")}
    assert after == before
    assert len(after["dashboard"]) == len(assets("dashboards")) == 6
    assert len(after["chart"]) == len(assets("charts"))
    assert len(after["dataset"]) == len(assets("datasets"))
    titles = [t for _, t in after["dashboard"]]
    assert len(set(titles)) == len(titles)


def test_the_live_dashboard_refreshes_itself_every_10_seconds(stack):
    """The refresh frequency of the assets' metadata survives the import: Superset serves it to the dashboard
    page, which sets its own periodic refresh from it."""
    admin = api_session(stack, "admin")
    r = admin.get(f"{stack['url']}/api/v1/dashboard/today-live", timeout=60)
    r.raise_for_status()
    dash = r.json()["result"]
    assert dash["dashboard_title"] == "Today (live)"
    assert json.loads(dash["json_metadata"])["refresh_frequency"] == 10
    others = [d for d in listed(admin, stack, "dashboard") if d["slug"] != "today-live"]
    for d in others:
        meta = admin.get(f"{stack['url']}/api/v1/dashboard/{d['id']}", timeout=60).json()["result"]["json_metadata"]
        assert json.loads(meta).get("refresh_frequency", 0) == 0, d["slug"]


def test_the_viewer_opens_the_dashboards_but_not_sql_lab_nor_a_chart_edit(stack):
    viewer, admin = api_session(stack, "viewer"), api_session(stack, "admin")
    titles = sorted(d["dashboard_title"] for d in listed(viewer, stack, "dashboard"))
    assert titles == sorted(d["dashboard_title"] for d in assets("dashboards"))
    for d in listed(viewer, stack, "dashboard"):
        assert viewer.get(f"{stack['url']}/api/v1/dashboard/{d['id']}/charts", timeout=60).status_code == 200
    chart = listed(admin, stack, "chart")[0]
    edit = {"description": chart.get("description")}  # a no-op edit: allowed for the admin, refused for the viewer
    assert viewer.put(f"{stack['url']}/api/v1/chart/{chart['id']}", json=edit, timeout=60).status_code == 403
    assert admin.put(f"{stack['url']}/api/v1/chart/{chart['id']}", json=edit, timeout=60).status_code == 200
    # SQL Lab: neither the page nor running a query
    sql = {"database_id": 1, "sql": "SELECT 1", "runAsync": False}
    assert viewer.post(f"{stack['url']}/api/v1/sqllab/execute/", json=sql, timeout=60).status_code == 403
    viewer_web, admin_web = web_session(stack, "viewer"), web_session(stack, "admin")
    page = viewer_web.get(f"{stack['url']}/sqllab/", timeout=60, allow_redirects=False)
    assert page.status_code in (302, 403), page.status_code
    assert "/sqllab" not in page.headers.get("Location", "")
    assert admin_web.get(f"{stack['url']}/sqllab/", timeout=60, allow_redirects=False).status_code == 200
    # and the viewer does open a dashboard page
    assert viewer_web.get(f"{stack['url']}/superset/dashboard/sales-overview/", timeout=60).status_code == 200


def test_screenshots_are_git_ignored():
    out = subprocess.run(["git", "check-ignore", "-q", str(ARTIFACTS / "sales-overview.png")], cwd=PROJECT_ROOT)
    assert out.returncode == 0
    assert Path(PROJECT_ROOT / ".gitignore").read_text().count("/artifacts/") == 1


def test_no_generated_key_or_password_appears_in_any_log(stack):
    """The secrets the project generates or is given (the object store's secret keys of both roles, Superset's
    secret key and its users' passwords) stay in their own files and in the environment: no log the services
    write, and no artifact of the tests, holds one. Run last in the services' group, once every server has
    worked. (The access key ids are not secrets, they name an identity: Trino's startup log lists its catalog's.)"""
    from test_lakehouse_s3 import role_keys

    settings = stack["settings"]
    secrets = {name: value for name, value in role_keys(settings).items() if "SECRET" in name} | {
        "SUPERSET_SECRET_KEY": stack["env"]["SUPERSET_SECRET_KEY"],
        "SUPERSET_ADMIN_PASSWORD": stack["admin"][1], "SUPERSET_VIEWER_PASSWORD": stack["viewer"][1]}
    assert len(secrets) == 5 and all(len(v) >= 16 for v in secrets.values()), sorted(secrets)
    services_dir = Path(os.environ.get("APPAREL_SERVICES_DIR") or PROJECT_ROOT / ".services")
    # where the secrets belong: the credentials file, the store's identities, Superset's metadata database
    # (its users' password hashes, never the passwords)
    kept = {Path(settings.s3["credentials_file"]).resolve(), (services_dir / "objectstore" / "s3.json").resolve()}
    data = [services_dir / "objectstore" / "data", services_dir / "kafka" / "data"]  # stores, not logs
    logs = [p for root in (services_dir, PROJECT_ROOT / "artifacts") if root.exists() for p in root.rglob("*")
            if p.is_file() and p.resolve() not in kept and not p.is_symlink()
            and not any(d in p.parents for d in data)
            and (p.suffix in (".log", ".out", ".txt", ".xml", ".json") or "log" in p.name or "logs" in p.parts)]
    # the object store's: weed.log from one process, <process>.log from the replicated layout (SCALED_OUT)
    assert any(p.name in ("weed.log", "s3.log") for p in logs) and any(p.name == "superset.log" for p in logs), logs
    assert any(p.parent.name == "logs" and p.name.startswith("server.log") for p in logs), logs  # Trino's
    leaks = {(str(p), name) for p in logs for name, value in secrets.items() if value.encode() in p.read_bytes()}
    assert leaks == set()
