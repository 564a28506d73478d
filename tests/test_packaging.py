"""What ``pip install svdk`` gets: the wheel's files and metadata."""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import svdk

REPO = Path(__file__).resolve().parents[1]
# Files svdk reads at run time besides its modules.
DATA_FILES = ["svdk/models/compact.keras", "svdk/models/compact.json", "svdk/py.typed"]
# What a clone holds but the build must not see (or reuse: a stale build/ would
# put files into the wheel that the configuration no longer selects).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel pip builds from a copy of this checkout (about 10 s)."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (pip install 'svdk[test]')")
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(tmp / "dist"), str(source)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, f"pip wheel failed:\n{build.stdout}\n{build.stderr}"
    (path,) = (tmp / "dist").glob("svdk-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def _dist_info(wheel: zipfile.ZipFile) -> str:
    (name,) = {n.split("/")[0] for n in wheel.namelist() if n.split("/")[0].endswith(".dist-info")}
    return name


def _metadata(wheel: zipfile.ZipFile):
    return email.parser.Parser().parsestr(wheel.read(f"{_dist_info(wheel)}/METADATA").decode())


@pytest.mark.parametrize("name", DATA_FILES)
def test_wheel_ships_the_files_svdk_reads(wheel, name):
    assert name in wheel.namelist(), f"{name} is missing from the wheel; see [tool.setuptools.package-data]"


def test_wheel_installs_svdk_and_nothing_else(wheel):
    top = {n.split("/")[0] for n in wheel.namelist()}
    stray = sorted(t for t in top if t != "svdk" and not t.endswith(".dist-info"))
    assert not stray, f"the wheel would install {stray} into site-packages; only svdk belongs there"
    modules = {n for n in wheel.namelist() if n.startswith("svdk/") and n.endswith(".py")}
    assert modules == {p.relative_to(REPO).as_posix() for p in (REPO / "svdk").rglob("*.py")}


def test_wheel_carries_the_license(wheel):
    licenses = [n for n in wheel.namelist() if n.startswith(f"{_dist_info(wheel)}/") and n.endswith("/LICENSE")]
    assert licenses, "no LICENSE in the wheel's dist-info"
    assert wheel.read(licenses[0]) == (REPO / "LICENSE").read_bytes()
    assert _metadata(wheel)["License-Expression"] == "MIT"


def test_wheel_version_is_svdk_version(wheel):
    assert _metadata(wheel)["Version"] == svdk.__version__
    assert _dist_info(wheel) == f"svdk-{svdk.__version__}.dist-info"


def test_wheel_installs_the_svdk_command(wheel):
    entry_points = wheel.read(f"{_dist_info(wheel)}/entry_points.txt").decode()
    assert "svdk = svdk.cli:main" in entry_points

