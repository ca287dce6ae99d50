"""Typing reaches user code (issue 12 item 7): ``mypy --strict`` on a typed user script passes,
the same script with ``event.data.contnet`` fails (for the Voxsig, Jifeline and Genesys clients'
handlers, ``wait_for()`` and ``events()``), and the install line of the README's
type-checking section lets mypy find the package (the default editable install's import hook
hides it from mypy)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from .conftest import T

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "typing_examples"

pytest.importorskip("mypy")


def _readme_install_options() -> list[str]:
    """The options of the install line the README's type-checking section gives (and the test
    command's, which must agree)."""
    readme = (ROOT / "README.md").read_text()
    typing_section = readme[readme.index("### Type checking your handlers") :]
    typing_section = typing_section[: typing_section.index("\n### ")]
    lines = [x for x in typing_section.splitlines() if x.startswith("    pip install") and " -e " in x]
    assert len(lines) == 1, "the type-checking section shows one editable install line"
    test_line = next(x for x in readme.splitlines() if "pip install" in x and "[test]" in x and "pytest" in x)
    options = []
    for line, extra in ((lines[0], "demo"), (test_line.split("&&")[0], "test")):
        words = line.split()
        options.append([w for w in words[words.index("install") + 1 :] if w not in ("-e", f"'.[{extra}]'")])
    assert options[0] == options[1], options
    return options[0]


@pytest.fixture(scope="module")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv where realtime_sync is installed the README's way (offline: the
    dependencies come from this interpreter's site-packages through a .pth file)."""
    where = tmp_path_factory.mktemp("user-venv")
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(where / "venv")
    python = where / "venv" / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "_deps_from_the_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    options = _readme_install_options()
    assert any("editable_mode=compat" in o for o in options), options
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         *options, "-e", str(ROOT)],
        capture_output=True, text=True, check=True, timeout=T(300), cwd=where,
    )  # fmt: skip
    return python


def _mypy(python: Path, example: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Run where a user would: outside the repository (no pyproject.toml, the package installed).
    shutil.copy(EXAMPLES / example, tmp_path / example)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable", str(python), example],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=T(300),
    )  # fmt: skip


def test_mypy_strict_passes_on_a_typed_user_script(user_env: Path, tmp_path: Path) -> None:
    result = _mypy(user_env, "user_ok.py", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_fails_on_a_typo_in_event_data(user_env: Path, tmp_path: Path) -> None:
    result = _mypy(user_env, "user_typo.py", tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert '"Message" has no attribute "contnet"; maybe "content"?' in result.stdout
    assert '"Message" has no attribute "contnt"' in result.stdout  # wait_for("message.created")
    assert "Cannot find implementation" not in result.stdout


def test_mypy_strict_checks_a_genesys_csrf_callable(user_env: Path, tmp_path: Path) -> None:
    result = _mypy(user_env, "user_csrf_bad.py", tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Argument "csrf" to "GenesysChatClient" has incompatible type' in result.stdout


def test_mypy_strict_types_jifeline_and_genesys_waits_by_event_name(user_env: Path, tmp_path: Path) -> None:
    # Every documented event name's model (assert_type), Event[Any] for patterns and other names,
    # and on() keeping the decorated function's type, for both Jifeline clients and Genesys.
    result = _mypy(user_env, "user_vendors_ok.py", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_fails_on_fields_the_jifeline_and_genesys_models_lack(user_env: Path, tmp_path: Path) -> None:
    result = _mypy(user_env, "user_vendors_typo.py", tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    for line, error in [
        (9, '"Ticket" has no attribute "ticket_number"'),  # JifelineCustomerClient.wait_for
        (11, '"Connection" has no attribute "uuid"'),  # JifelineCustomerClient.events
        (14, '"ConnectorStatus" has no attribute "is_online"'),  # JifelinePartnerClient.wait_for
        (15, '"SystemEvent" has no attribute "ticket"; maybe "ticket_id"?'),
        (18, '"MessageLogUpdate" has no attribute "chat"'),  # GenesysChatClient.wait_for
        (20, '"ChatStateChange" has no attribute "messages"'),  # GenesysChatClient.events
    ]:
        assert f"user_vendors_typo.py:{line}: error: {error}" in result.stdout, result.stdout
    assert "Found 6 errors" in result.stdout, result.stdout


def test_mypy_strict_keeps_the_vendor_type_and_types_the_contrib_decorators(user_env: Path, tmp_path: Path) -> None:
    # `with VendorClient(...) as c`, `VendorClient(...).start()`, wait_connected() and hub.add()
    # give the vendor class (was Client[Adapter]: no subscribe_ticket, wait_for() an Event[Any]);
    # wait_for("handshake") of GenesysChatClient / CometDClient a SessionInfo (was Event[Any]);
    # the Django and Flask @realtime.on / @realtime.setup keep the function's type (were untyped
    # decorators: `Untyped decorator makes function "store" untyped`); event.account_id is
    # int | str | None (was Any).
    result = _mypy(user_env, "user_self_types_ok.py", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_catches_typos_behind_start_with_and_the_contrib_decorators(user_env: Path, tmp_path: Path) -> None:
    result = _mypy(user_env, "user_self_types_typo.py", tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    for line, error in [
        (12, '"Message" has no attribute "contnet"; maybe "content"?'),  # VoxsigClient(...).start()
        (14, '"JifelineCustomerClient" has no attribute "subscribe_tickets"'),  # ... as customer
        (15, '"Ticket" has no attribute "ticket_number"'),  # with JifelineCustomerClient(...) as customer
        (17, '"SessionInfo" has no attribute "numbr"; maybe "number"?'),  # wait_for("handshake")
        (18, 'Incompatible types in assignment (expression has type "int | str | None", variable has type "int")'),
        (32, 'Argument 1 to "store" has incompatible type "str"; expected "Event[Message]"'),  # Django
        (33, 'Argument 1 to "store_from_flask" has incompatible type "str"; expected "Event[Message]"'),  # Flask
    ]:
        assert f"user_self_types_typo.py:{line}: error: {error}" in result.stdout, result.stdout
    assert "Found 7 errors" in result.stdout, result.stdout


SAMPLES = sorted(p.name for p in (ROOT / "samples").glob("*.py"))


@pytest.mark.parametrize("sample", SAMPLES)
def test_mypy_strict_passes_on_the_samples(user_env: Path, tmp_path: Path, sample: str) -> None:
    """Every sample script is user code a reader copies: it passes `mypy --strict` where a user
    runs it (flask_app.py failed with `Untyped decorator makes function ... untyped`, and
    voxsig_contact.py with `Call to untyped function (unknown) in typed context`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    shutil.copy(ROOT / "samples" / sample, tmp_path / sample)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable", str(user_env), sample],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=T(300),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes_on_the_django_sample_handlers(user_env: Path, tmp_path: Path) -> None:
    """The Django sample's realtime.py and views.py (typed handlers on @realtime.on).  Django ships
    no type information (django-stubs does): its classes are Any here, hence the two options."""
    project = tmp_path / "django_project"
    shutil.copytree(ROOT / "samples" / "django_project", project)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable", str(user_env),
         "--ignore-missing-imports", "--allow-subclassing-any", "inbox/realtime.py", "inbox/views.py"],
        capture_output=True, text=True, cwd=project, env=env, timeout=T(300),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
