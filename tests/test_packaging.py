"""What ``pip install svdk`` gets: the wheel's files and metadata, and the
three places that name dependency versions (pyproject.toml's ranges,
constraints.txt's pins for CI, requirements.txt's pins for the Space).
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

packaging = pytest.importorskip("packaging", reason="needs packaging (pip install 'svdk[test]')")
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402
from packaging.version import Version  # noqa: E402

import svdk  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Files svdk reads at run time besides its modules.
DATA_FILES = ["svdk/models/patch.keras", "svdk/models/patch.json", "svdk/models/patch.tflite", "svdk/py.typed",
              "svdk/models/tiled/model.keras", "svdk/models/tiled/model.json", "svdk/models/tiled/model.tflite"]
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


def test_wheel_requires_ranges_not_pins(wheel):
    requires = _metadata(wheel).get_all("Requires-Dist")
    assert any(Requirement(r).name == "numpy" for r in requires)
    pinned = [r for r in requires if any(s.operator in ("==", "===") for s in Requirement(r).specifier)]
    assert not pinned, f"the wheel pins {pinned}: users need ranges (exact pins go in constraints.txt)"


def test_wheel_installs_the_svdk_command(wheel):
    entry_points = wheel.read(f"{_dist_info(wheel)}/entry_points.txt").decode()
    assert "svdk = svdk.cli:main" in entry_points


# --- pyproject.toml, constraints.txt and requirements.txt agree ---------------------------


def _pyproject_requirements() -> dict[str, list[tuple[str, Requirement]]]:
    """Every requirement of pyproject.toml but svdk's own extras, by name: [(group, requirement)]."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    found: dict[str, list[tuple[str, Requirement]]] = {}
    for group, lines in groups.items():
        for line in lines:
            req = Requirement(line)
            if canonicalize_name(req.name) != "svdk":
                found.setdefault(canonicalize_name(req.name), []).append((group, req))
    return found


def _pins(path: Path) -> dict[str, Version]:
    """name -> version of a pip requirements file that pins each line with ==."""
    pins: dict[str, Version] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}:{number}: {line!r} is not an exact pin"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{path.name}:{number}: {req.name} pinned twice"
        pins[name] = Version(specs[0].version)
    return pins


def test_constraints_pin_every_dependency_within_its_range():
    wanted = _pyproject_requirements()
    pins = _pins(REPO / "constraints.txt")
    assert sorted(pins) == sorted(wanted), "constraints.txt must pin exactly pyproject's dependencies and extras"
    outside = [
        f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {req} ({group})"
        for name, uses in wanted.items()
        for group, req in uses
        if not req.specifier.contains(pins[name], prereleases=True)
    ]
    assert not outside, "; ".join(outside)


def test_requirements_txt_pins_what_constraints_pin():
    """The Space installs the library and its app, model and hub extras at CI's versions."""
    space = {
        name
        for name, uses in _pyproject_requirements().items()
        if any(group in ("dependencies", "app", "model", "hub") for group, _ in uses)
    }
    pins = _pins(REPO / "constraints.txt")
    space_pins = _pins(REPO / "requirements.txt")
    assert sorted(space_pins) == sorted(space)
    differ = {name: (str(v), str(pins[name])) for name, v in space_pins.items() if v != pins[name]}
    assert not differ, f"requirements.txt and constraints.txt pin differently: {differ}"
