"""The API's place in the layers, checked: it sits beside the views, on top of the apps'
access helpers, forms and actions; no app imports it, only the site's URLs mount it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("spaces", "environments", "services", "clusters", "devcluster", "ale_site")
MOUNTS = {ROOT / "ale_site" / "urls.py"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_it_keeps_the_apps_free_of_the_api():
    offenders = [
        str(path.relative_to(ROOT))
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if path not in MOUNTS and any(name == "api" or name.startswith("api.") for name in imported_modules(path))
    ]
    assert offenders == [], f"only ale_site/urls.py may import the api package: {offenders}"


def test_it_reaches_the_cluster_only_through_the_one_client():
    for path in (ROOT / "api").rglob("*.py"):
        assert not any(name.startswith("kubernetes") for name in imported_modules(path)), path
