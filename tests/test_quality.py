"""Lint, format and type checks are part of the test suite: ruff (check and format) and mypy must
be clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the test extra")
def test_ruff_is_clean():
    paths = [p for p in ("realtime_sync", "tests", "samples", "benchmarks") if (ROOT / p).exists()]
    result = _run("ruff", "check", *paths)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the test extra")
def test_ruff_format_is_clean():
    # The Python directories (not the Markdown: the README's snippets are written for reading).
    paths = [p for p in ("realtime_sync", "tests", "samples", "benchmarks") if (ROOT / p).exists()]
    result = _run("ruff", "format", "--check", *paths)
    assert result.returncode == 0, "run `ruff format " + " ".join(paths) + "`:\n" + result.stdout + result.stderr


def test_mypy_is_clean(tmp_path):
    pytest.importorskip("mypy")
    result = _run(sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), "realtime_sync")
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_ships_py_typed():
    assert (ROOT / "realtime_sync" / "py.typed").exists()
