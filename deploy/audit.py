"""Known vulnerabilities of the pinned packages, from PyPI's own vulnerability data.

    .venv/bin/python deploy/audit.py [LOCK ...]          (or: make audit)

What pip-audit does, in the one way that works here. pip-audit asks PyPI for each pinned
release (``/pypi/NAME/VERSION/json``) or OSV; on this network only PyPI's project endpoint
(``/pypi/NAME/json``) answers, and it carries the advisories (from the PyPA advisory database,
as OSV records) that affect the project's *newest* release. So:

- a pin that is the newest release is audited exactly: every advisory PyPI lists for it is a
  finding;
- a pin behind the newest release cannot be audited from here: it is reported as *behind*,
  with the newest version and, when ``deploy/audit-accepted.yaml`` lists it, the reason it
  stays (another package caps it). With ``--strict`` an unlisted behind pin fails the audit;
  without, it is reported only (a new upstream release must not fail CI by itself).

Findings are accepted only by advisory ID (or an alias) in the same file, each with a reason.
Exit status: 0 when every finding is accepted (and, with ``--strict``, every behind pin), 1
otherwise (each one printed), 2 when PyPI cannot be reached. Where OSV is reachable,
``pip-audit -r LOCK`` audits every pin.
"""

from __future__ import annotations

import argparse
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOCKS = [
    "requirements.lock",
    "requirements-serve.lock",
    "requirements-train.lock",
    "requirements-ray.lock",
    "requirements-tools.lock",
]
ACCEPTED = REPO / "deploy" / "audit-accepted.yaml"
PYPI = "https://pypi.org/pypi/{name}/json"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")

__all__ = ["Pin", "Report", "audit", "main", "read_pins"]


@dataclass(frozen=True)
class Pin:
    name: str
    version: str


@dataclass
class Report:
    """What PyPI says of each pin."""

    findings: list[tuple[Pin, dict[str, Any]]] = field(default_factory=list)
    behind: list[tuple[Pin, str]] = field(default_factory=list)  # (pin, newest release)
    audited: int = 0


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(paths: list[Path]) -> list[Pin]:
    """Every ``name==version`` line of the lock files, once each."""
    pins: set[Pin] = set()
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _PIN.match(line.strip())
            if match:
                pins.add(Pin(_normal(match.group(1)), match.group(2)))
    return sorted(pins, key=lambda p: (p.name, p.version))


def _project(client: Any, name: str) -> dict[str, Any]:
    response = client.get(PYPI.format(name=name))
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def audit(pins: list[Pin], client: Any) -> Report:
    """Look up every pin's project on PyPI (eight at a time)."""
    report = Report()
    with ThreadPoolExecutor(max_workers=8) as pool:
        projects = dict(zip(pins, pool.map(lambda p: _project(client, p.name), pins), strict=True))
    for pin, project in projects.items():
        newest = project["info"]["version"]
        if newest != pin.version:
            report.behind.append((pin, newest))
            continue
        report.audited += 1
        for advisory in project.get("vulnerabilities") or []:
            if not advisory.get("withdrawn"):
                report.findings.append((pin, advisory))
    return report


def _accepted(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(advisory ID -> reason, ``name==version`` -> reason) from the accepted list."""
    import yaml

    if not path.exists():
        return {}, {}
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    advisories = {str(k): str(v) for k, v in (document.get("advisories") or {}).items()}
    behind = {str(k): str(v) for k, v in (document.get("behind") or {}).items()}
    return advisories, behind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "locks", nargs="*", type=Path, help=f"lock files (default: {', '.join(LOCKS)})"
    )
    parser.add_argument("--accepted", type=Path, default=ACCEPTED)
    parser.add_argument("--strict", action="store_true", help="fail on unlisted behind pins")
    args = parser.parse_args(argv)
    paths = args.locks or [REPO / name for name in LOCKS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: no such lock file: {', '.join(missing)}", file=sys.stderr)
        return 2
    pins = read_pins(paths)

    import httpx

    try:
        with httpx.Client(timeout=30, follow_redirects=True) as client:
            report = audit(pins, client)
    except httpx.HTTPError as exc:
        print(f"error: PyPI cannot be reached ({exc}); nothing was audited", file=sys.stderr)
        return 2
    advisories, behind_ok = _accepted(args.accepted)
    problems = 0
    for pin, advisory in report.findings:
        ident = advisory.get("id", "?")
        aliases = ", ".join(advisory.get("aliases") or [])
        fixed = ", ".join(advisory.get("fixed_in") or []) or "no fixed release"
        accepted = advisories.get(ident) or next(
            (advisories[a] for a in advisory.get("aliases") or [] if a in advisories), None
        )
        state = f"accepted: {accepted}" if accepted else "NOT ACCEPTED"
        problems += accepted is None
        print(f"{pin.name}=={pin.version}: {ident} ({aliases}) fixed in {fixed} - {state}")
    for pin, newest in report.behind:
        reason = behind_ok.get(f"{pin.name}=={pin.version}")
        problems += reason is None and args.strict
        state = f"accepted: {reason}" if reason else "not reviewed (run make lock, or list it)"
        print(f"{pin.name}=={pin.version}: behind {newest}, cannot be audited here - {state}")
    print(
        f"{len(pins)} pins: {report.audited} audited (the newest release), "
        f"{len(report.findings)} advisories, {len(report.behind)} behind; "
        f"{problems} not accepted"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
