"""The wheel as users get it: every package under `quarry/`, its data files, the `quarry`
command, nothing installed under a generic top-level name (`core`, `api`, ...), and every
package importable from the wheel alone, outside the repository."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "retrieval", "memory", "agents", "workers", "evals", "api", "ui", "cli")
PACKAGES = (
    "core",
    "retrieval",
    "memory",
    "agents",
    "agents/llm",
    "workers",
    "evals",
    "evals/datasets",
    "api",
    "api/routers",
    "ui",
    "cli",
)
MODULES = ["quarry." + p.replace("/", ".") for p in PACKAGES]
SKIP = shutil.ignore_patterns(".*", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", "test-artifacts")


def _run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=150, **kwargs)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the source (so a build here never meets the build/
    folder of another run), with the build backend of this environment (no download)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp / "dist", src])
    (built,) = (tmp / "dist").glob("quarry-*.whl")
    return built


def _repo_files(folder: str, suffixes: tuple[str, ...] | None = None) -> set[str]:
    """Files under a source folder, as the wheel names them (quarry/<folder>/...)."""
    return {
        "quarry/" + path.relative_to(ROOT).as_posix()
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and not path.name.endswith(".pyc")
        and (suffixes is None or path.suffix in suffixes)
    }


def test_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        record = {line.split(",")[0] for line in zf.read(f"{dist_info}/RECORD").decode().splitlines() if line}
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert record == names
    assert {n.split("/")[0] for n in names} == {"quarry", dist_info}, "something installs outside quarry/"
    assert all(n.startswith("quarry/") for n in names if n.endswith(".py"))
    assert not {n for n in names if n.split("/")[0] in FOLDERS}, "a generic top-level package is installed"
    missing = {f"quarry/{p}/__init__.py" for p in PACKAGES} - names
    assert not missing, f"packages left out of the wheel: {sorted(missing)}"
    assert "quarry/ui/static/index.html" in names
    sources = set().union(*(_repo_files(f, (".py",)) for f in FOLDERS))
    assert not sources - names, f"modules left out of the wheel: {sorted(sources - names)}"
    assets = _repo_files("ui/static")
    assert not assets - names, f"UI files left out of the wheel: {sorted(assets - names)}"
    if (ROOT / "retrieval" / "migrations").is_dir():  # Alembic: env.py, the revisions, the script template
        migrations = _repo_files("retrieval/migrations")
        assert not migrations - names, f"migration files left out of the wheel: {sorted(migrations - names)}"
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert parser["console_scripts"]["quarry"].strip() == "quarry.cli:main"


FRESH_CHECK = """
import importlib.metadata as md, importlib.util, json, sys
dist = md.distribution("quarry")
print(json.dumps({
    "files": sorted(str(f) for f in dist.files),
    "scripts": {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"},
    "quarry": list(importlib.util.find_spec("quarry").submodule_search_locations),
    "generic": [n for n in sys.argv[1].split(",") if importlib.util.find_spec(n) is not None],
}))
"""


def test_wheel_installs_alone_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    """A venv without system site-packages (nor this one's): the wheel installed without its
    dependencies, its metadata read and its packages located there (importing them needs the
    dependencies)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, system_site_packages=False, symlinks=True)
    python = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel])
    proc = _run([python, "-c", FRESH_CHECK, ",".join(FOLDERS)], cwd=tmp_path)
    result = json.loads(proc.stdout)
    (location,) = result["quarry"]  # one portion of the namespace: the installed one
    assert Path(location).is_relative_to(env_dir), location
    missing = [p for p in PACKAGES if not (Path(location) / p / "__init__.py").is_file()]
    assert not missing, f"packages not installed: {missing}"
    assert result["generic"] == []
    assert result["scripts"] == {"quarry": "quarry.cli:main"}
    assert "quarry/ui/static/index.html" in result["files"]
    assert (env_dir / "bin" / "quarry").is_file()


IMPORT_CHECK = """
import importlib, importlib.util, json, os, sys
target = sys.argv[1]
for name in sys.argv[2].split(","):
    importlib.import_module(name)
print(json.dumps({
    "outside": sorted(
        n for n, m in sys.modules.items()
        if n.startswith("quarry.") and getattr(m, "__file__", None) and not m.__file__.startswith(target)
    ),
    "generic": [n for n in sys.argv[3].split(",") if importlib.util.find_spec(n) is not None],
}))
"""


def test_every_package_imports_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    """With this environment's dependencies, every package imports from the unpacked wheel
    (outside the repository, the editable install out of the way) and no generic name resolves."""
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    # PYTHONPATH comes before the editable install's path entry, so the wheel's copy wins; a
    # quarry.* module loaded from anywhere else (the repository) is reported.
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = _run([sys.executable, "-c", IMPORT_CHECK, target, ",".join(MODULES), ",".join(FOLDERS)], cwd=work, env=env)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["outside"] == [], f"imported from outside the wheel: {result['outside']}"
    assert result["generic"] == []
