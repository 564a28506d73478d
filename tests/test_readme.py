"""The README's examples run as written.

Every ```python block runs as copied, in a fresh interpreter, in an empty
folder holding ``photo.png`` (scikit-image's astronaut), with
``HF_HUB_OFFLINE=1``. Every line of the "Command line" section's ```sh block
runs the same way with this environment's ``svdk`` command (comments
stripped) and must exit with status 0; later lines may use the files earlier
ones wrote, as a reader's would.

A block the tests cannot run (it needs a token, the network or a running
server) is preceded by a line ``<!-- not run by tests: REASON -->``; a
command line is skipped when its comment says ``not run by tests: REASON``.
Both are reported as skipped with that reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
NOT_RUN = re.compile(r"not run by tests:\s*(?P<reason>.*?)\s*$")
MARKER = re.compile(r"^\s*<!--\s*not run by tests:\s*(?P<reason>.*?)\s*-->\s*$")
TIMEOUT = 300  # seconds for one block or line
SVDK = Path(sys.executable).parent / "svdk"


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # of the opening fence, 1-based
    section: str  # the "## " heading it is under
    code: str
    skip: str | None  # the reason given by a <!-- not run by tests: ... --> line above it


def blocks(text: str) -> list[Block]:
    found, section, fence, body, previous = [], "", None, [], ""  # previous: the last non-blank line
    for number, line in enumerate(text.splitlines(), 1):
        if fence is not None:
            if line.strip() == "```":
                found.append(Block(fence[0], fence[1], section, "\n".join(body) + "\n", fence[2]))
                fence, previous = None, line
            else:
                body.append(line)
            continue
        if line.startswith("```"):
            marker = MARKER.match(previous)
            fence, body = (line[3:].strip(), number, marker and marker["reason"]), []
        elif line.startswith("## "):
            section = line[3:].strip()
        if line.strip():
            previous = line
    assert fence is None, f"README.md:{fence[1]}: a ``` block is never closed"
    return found


BLOCKS = blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.lang == "python"]
CLI = [b for b in BLOCKS if b.lang == "sh" and b.section == "Command line"]


def command_lines(block: Block) -> list[tuple[int, str, str | None]]:
    """(README line, command without its comment, reason to skip or None)."""
    lines = []
    for offset, raw in enumerate(block.code.splitlines(), 1):
        parts = re.split(r"(?:^|\s)#", raw, maxsplit=1)
        command = parts[0].strip()
        comment = parts[1] if len(parts) > 1 else ""
        skip = NOT_RUN.search(comment)
        if command:
            lines.append((block.line + offset, command, skip and skip["reason"]))
    return lines


@pytest.fixture
def folder(tmp_path) -> Path:
    from skimage import data

    Image.fromarray(np.asarray(data.astronaut())).save(tmp_path / "photo.png")
    return tmp_path


def environment() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1")
    env["PATH"] = f"{SVDK.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def tail(text: str, lines: int = 12) -> str:
    """The end of a traceback or error output: where it failed and why."""
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept)


def test_readme_has_examples_to_run():
    assert PYTHON, "no ```python block found in README.md"
    assert len(CLI) == 1, f"expected one ```sh block under '## Command line', found {len(CLI)}"
    assert command_lines(CLI[0])


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=f"line{b.line}", marks=[pytest.mark.skip(reason=b.skip)] if b.skip else []) for b in PYTHON],
)
def test_python_block_runs(block, folder):
    script = folder / f"readme_line{block.line}.py"
    script.write_text(block.code, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, script.name], cwd=folder, env=environment(),
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    if run.returncode != 0:
        pytest.fail(f"README.md:{block.line} ({block.section}) exited with status {run.returncode}:\n"
                    f"{tail(run.stderr)}", pytrace=False)


@pytest.mark.skipif(not CLI, reason="no ```sh block under '## Command line' (test_readme_has_examples_to_run fails)")
def test_command_line_examples_run(folder):
    assert SVDK.is_file(), f"{SVDK} is missing: install svdk into this environment (pip install -e .)"
    failed, skipped = [], []
    for line, command, skip in command_lines(CLI[0]):
        if skip:
            skipped.append(f"README.md:{line} {command} ({skip})")
            continue
        words = command.split(maxsplit=1)
        if words[0] == "svdk":
            command = " ".join([str(SVDK), *words[1:]])
        run = subprocess.run(
            command, shell=True, cwd=folder, env=environment(),
            capture_output=True, text=True, timeout=TIMEOUT,
        )
        if run.returncode != 0:
            failed.append(f"README.md:{line} `{' '.join(words)}` exited with status {run.returncode}: "
                          f"{tail(run.stderr, 3)}")
    for note in skipped:
        print("not run:", note)
    if failed:
        pytest.fail("\n".join(failed), pytrace=False)


CONSOLE = [b for b in BLOCKS if b.lang == "console"]


def transcripts(block: Block) -> list[tuple[str, str]]:
    """``(command, the output printed under it)`` for each ``$ `` line of a console block."""
    out: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return [(command, "\n".join(lines)) for command, lines in out]


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=f"line{b.line}", marks=[pytest.mark.skip(reason=b.skip)] if b.skip else []) for b in CONSOLE],
)
def test_console_transcripts_print_what_the_readme_shows(block, folder):
    """The figures a reader sees in a ```console block are what the command prints today."""
    assert transcripts(block), f"README.md:{block.line}: a console block without a '$ ' command"
    for command, shown in transcripts(block):
        words = command.split()
        assert words[0] == "svdk", f"README.md:{block.line}: only svdk commands are checked: {command}"
        run = subprocess.run([str(SVDK), *words[1:]], cwd=folder, env=environment(),
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert run.returncode == 0, tail(run.stderr)
        assert run.stdout.rstrip("\n") == shown, f"README.md:{block.line}: `{command}` now prints:\n{run.stdout}"
