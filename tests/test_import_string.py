"""Dotted paths given on the command line or in settings (``--tenants myapp.tenants:all_agents``,
a token provider) are imported from the working directory too.

The ``realtime-sync`` console script, unlike ``python -m realtime_sync``, does not put the working
directory on ``sys.path``: the README's ``realtime-sync listen voxsig --tenants
myapp.tenants:all_agents ...`` run from the project's directory said ``No module named 'myapp'``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from realtime_sync.contrib._common import import_string
from realtime_sync.exceptions import ConfigurationError

from .conftest import T

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
    import sys
    sys.path.remove("")  # as under the console script: no working directory on sys.path
    from realtime_sync.contrib._common import import_string
    from realtime_sync.exceptions import ConfigurationError
    try:
        print(import_string(sys.argv[1])())
    except ConfigurationError as exc:
        print("ConfigurationError:", exc)
"""


def _project(tmp_path: Path) -> Path:
    pkg = tmp_path / "myapp13"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tenants.py").write_text("def all_agents():\n    return ['agent-1', 'agent-2']\n")
    (pkg / "broken.py").write_text("import no_such_dependency_13\n")
    return tmp_path


def _run(cwd: Path, path: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), path],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's realtime_sync
        capture_output=True,
        text=True,
        timeout=T(60),
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_module_of_the_working_directory_is_found(tmp_path: Path) -> None:
    assert _run(_project(tmp_path), "myapp13.tenants:all_agents") == "['agent-1', 'agent-2']"
    assert _run(tmp_path, "myapp13.tenants.all_agents") == "['agent-1', 'agent-2']"


def test_a_missing_module_says_where_it_was_looked_for(tmp_path: Path) -> None:
    out = _run(tmp_path, "nowhere13.tenants:all_agents")
    assert out.startswith("ConfigurationError: cannot import 'nowhere13.tenants:all_agents'")
    assert "working directory" in out and "PYTHONPATH" in out


def test_a_missing_dependency_of_the_module_is_reported_as_it_is(tmp_path: Path) -> None:
    out = _run(_project(tmp_path), "myapp13.broken:anything")
    assert "No module named 'no_such_dependency_13'" in out and "PYTHONPATH" not in out


def test_the_working_directory_never_shadows_an_installed_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "json.py").write_text("loads = 'shadowed'\n")
    monkeypatch.chdir(tmp_path)
    assert import_string("json:loads") is not None and import_string("json:loads") != "shadowed"
    with pytest.raises(ConfigurationError, match="not an importable"):
        import_string("nocolon")
    assert os.getcwd() == str(tmp_path)
