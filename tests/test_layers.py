"""The layers hold: import-linter's contracts, SQL only in storage/, our top-level names ours.

docs/architecture.md opens with the picture these check.
"""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("detector", "storage", "streams", "agents", "benchmarks")
#: statement builders that make SQL; outside storage/ none may be imported or called
SQL_BUILDERS = frozenset({"text", "select", "insert", "update", "delete", "literal_column"})


def _sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def sql_outside_storage(paths: list[Path]) -> list[str]:
    """Every place outside storage/ that imports a SQL statement builder of SQLAlchemy."""
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                names = {a.name for a in node.names} & SQL_BUILDERS
                if names:
                    found.append(f"{_name(path)}:{node.lineno} imports {sorted(names)}")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in SQL_BUILDERS
                and isinstance(node.value, ast.Name)
                and node.value.id in ("sqlalchemy", "sa")
            ):
                found.append(f"{_name(path)}:{node.lineno} uses sqlalchemy.{node.attr}")
    return found


def test_no_sql_statement_is_built_outside_storage() -> None:
    assert sql_outside_storage(_sources("detector", "streams", "agents")) == []


def test_the_sql_check_finds_sql(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sqlalchemy\nfrom sqlalchemy import text\nsqlalchemy.select(1)\n")
    hits = sql_outside_storage([bad])
    assert len(hits) == 2 and "imports ['text']" in hits[0] and "sqlalchemy.select" in hits[1]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_our_top_level_names_come_from_skyreel_only() -> None:
    """agents, streams, storage, detector, benchmarks are generic names installed as they are:
    no other distribution in this environment may ship a top-level module of the same name."""
    owners = importlib.metadata.packages_distributions()
    for name in PACKAGES:
        assert set(owners.get(name, ["skyreel"])) == {"skyreel"}, (name, owners.get(name))
    for name in PACKAGES:
        # a regular package or a module of that name anywhere else on the path would shadow or
        # be shadowed (the tests' own folders, e.g. tests/detector, are not packages)
        spec_paths = [
            Path(p) / name
            for p in sys.path
            if p
            and Path(p).resolve() != ROOT
            and ((Path(p) / name / "__init__.py").exists() or (Path(p) / f"{name}.py").exists())
        ]
        assert spec_paths == [], f"another {name!r} on sys.path: {spec_paths}"
