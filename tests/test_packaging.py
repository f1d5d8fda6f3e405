"""A plain (non-editable) install works: the wheel carries the SQL migrations, the web
console and both console scripts, and ``gateway migrate`` runs from it anywhere."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the build needs; copied so the build never writes into the source tree.
SOURCES = ("pyproject.toml", "README.md", "gateway", "admin", "migrations")
TIMEOUT = 120


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)],
        check=True,
        cwd=src,
        timeout=TIMEOUT,
    )
    (built,) = dist.glob("tollgate-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a directory of its own (no dependencies: those are here)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=TIMEOUT,
    )
    return target


def test_wheel_carries_migrations_console_and_scripts(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "tollgate_migrations/0001_init.sql" in names
    migrations = {f"tollgate_migrations/{p.name}" for p in (ROOT / "migrations").glob("*.sql")}
    assert migrations <= names
    console = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "admin" / "static").rglob("*")
        if p.is_file()
    }
    assert "admin/static/index.html" in console
    assert console <= names, f"missing from the wheel: {console - names}"
    assert not any(name.startswith(("tests/", "bench/")) for name in names)

    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    parser = configparser.ConfigParser()
    parser.read_string(zipfile.ZipFile(wheel).read(entry_points).decode())
    assert dict(parser["console_scripts"]) == {
        "gateway": "gateway.runtime.cli:main",
        "admin": "admin.cli:main",
    }


def _run(
    installed: Path, cwd: Path, database_url: str, *argv: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        # The installed copy comes first on the path, before the editable source tree.
        "PYTHONPATH": str(installed),
        "DATABASE_URL": database_url,
    }
    return subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def test_gateway_migrate_runs_from_the_installed_wheel(
    installed: Path, empty_database: str, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(
        installed,
        elsewhere,
        empty_database,
        sys.executable,
        "-c",
        "import gateway, admin, tollgate_migrations;"
        "print(gateway.__file__); print(admin.__file__); print(tollgate_migrations.__file__)",
    )
    assert where.returncode == 0, where.stderr
    for module_file in where.stdout.split():
        assert Path(module_file).is_relative_to(installed), f"{module_file} is not the wheel's"

    script = installed / "bin" / "gateway"
    first = _run(installed, elsewhere, empty_database, str(script), "migrate")
    assert first.returncode == 0, first.stderr
    files = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    assert f"applied {len(files)} migration(s): {', '.join(files)}" in first.stdout

    again = _run(installed, elsewhere, empty_database, str(script), "migrate")
    assert again.returncode == 0, again.stderr
    assert "database is up to date" in again.stdout
    assert not list(elsewhere.iterdir()), "migrate must not write into the working directory"
