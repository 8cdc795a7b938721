"""The secrets scan of `make lint` (and so of CI): detect-secrets over every file git tracks, against the
audited baseline `.secrets.baseline` (placeholders such as the user and password of an example store URL, the
test fixtures' fake keys, each checked by hand). A finding the baseline does not list fails, naming the file,
the line and the kind.

    .venv/bin/python scripts/secrets_scan.py            # scan
    .venv/bin/python scripts/secrets_scan.py --update   # after auditing new findings: rewrite the baseline

Findings match the baseline by file, kind and the secret's hash, so moving a line does not fail the scan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / ".secrets.baseline"


def scan() -> dict:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    names = [n for n in files.decode().split("\0") if n and n != BASELINE.name and (ROOT / n).is_file()]
    out = subprocess.run([sys.executable, "-m", "detect_secrets", "scan", *names], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def keys(results: dict) -> set[tuple[str, str, str]]:
    return {(name, f["type"], f["hashed_secret"]) for name, found in results.items() for f in found}


def main(argv: list[str]) -> int:
    report = scan()
    if argv == ["--update"]:
        BASELINE.write_text(json.dumps(report, indent=2) + "\n")
        print(f"secrets scan: {sum(map(len, report['results'].values()))} audited finding(s) kept in {BASELINE.name}")
        return 0
    allowed = keys(json.loads(BASELINE.read_text())["results"])
    new = [(name, f["line_number"], f["type"]) for name, found in report["results"].items() for f in found
           if (name, f["type"], f["hashed_secret"]) not in allowed]
    for name, line, kind in sorted(new):
        print(f"error: {name}:{line}: a possible secret ({kind}) that {BASELINE.name} does not list: remove it, "
              "or audit it and run scripts/secrets_scan.py --update", file=sys.stderr)
    if not new:
        print(f"secrets scan: {len(report['results'])} file(s) with audited placeholders only, nothing new")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
