from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from realtime_sync import Hub, ReconnectPolicy
from realtime_sync.config import timing_scale
from realtime_sync.testing import FakeVoxsigServer

from ._echo import EchoClient, EchoServer

try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    _hypothesis_settings = None

if _hypothesis_settings is not None:
    # The README's test command must pass every time: by default the property tests draw the
    # same examples on every run (derandomize), so a run never fails on an example no earlier
    # run saw.  Exploring new examples is a separate, longer run:
    #     python -m pytest tests -k "fuzz or hypothesis or never_raises" --hypothesis-profile=explore
    # (a failure there prints the example to add with @example).
    _hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
    _hypothesis_settings.register_profile("explore", derandomize=False, max_examples=5_000)
    _hypothesis_settings.load_profile("repeatable")

#: Fast reconnects for tests (the default waits 5 s after three instant retries).
FAST = ReconnectPolicy(instant_retries=3, interval=0.2, max_interval=0.2, jitter=0.0, stable_after=5.0)


def T(seconds: float) -> float:
    """A deadline scaled by REALTIME_SYNC_TIMING_SCALE for slow machines."""
    return seconds * timing_scale()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate and its key (PEM paths) for 127.0.0.1 and ``gws.test`` (a name
    only the tests' proxy resolves), made once per run with the openssl command."""
    if not shutil.which("openssl"):
        pytest.skip("openssl command not found")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:gws.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for the whole test: bound, never listening.
    (A port bound and closed again can be taken meanwhile by another process's server.)"""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy from the environment (``http_proxy``, ``https_proxy``, ``all_proxy``,
    ``no_proxy``, either case); returns the monkeypatch, to set some."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.fixture
def voxsig_server() -> Iterator[FakeVoxsigServer]:
    """The fake Voxsig (Chatwoot ActionCable) server, pinging every 0.3 s."""
    with FakeVoxsigServer(ping_interval=0.3) as server:
        yield server


@pytest.fixture
def clients() -> Iterator[Callable[..., Any]]:
    """``clients(cls, *args, **kw)``: a client of any class, with fast reconnects unless
    ``reconnect=`` is given; every client made is closed after the test."""
    made: list[Any] = []

    def make(cls: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        kw.setdefault("reconnect", FAST)
        client = cls(*args, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=5)


@pytest.fixture
def make_client(clients: Callable[..., Any]) -> Callable[..., EchoClient]:
    """``make_client(url, **kw)``: an :class:`EchoClient` (see :func:`clients`)."""
    return lambda url, **kw: clients(EchoClient, url, **kw)


@pytest.fixture(params=["standalone", "hub"])
def hub(request: pytest.FixtureRequest) -> Iterator[Hub | None]:
    """Runs a test twice: ``None`` (standalone clients), then a one-worker :class:`Hub`, closed
    with every thread after the test (pass it as ``hub=`` where not ``None``)."""
    if request.param == "standalone":
        yield None
        return
    pytest.importorskip("h11")  # long-polling on a hub
    h = Hub(workers=1, name="t-" + request.function.__name__[5:25])
    try:
        yield h
    finally:
        assert h.close(T(10))


def on(hub: Hub | None) -> dict[str, Hub]:
    """The client option for ``hub`` (the :func:`hub` fixture's value): ``{"hub": hub}`` or ``{}``."""
    return {} if hub is None else {"hub": hub}


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [
        t.name
        for t in threading.enumerate()
        if t.ident not in before and t.name.startswith("realtime_sync-") and "fake" not in t.name and t.is_alive()
    ]
    assert not leaked, f"threads still alive after the test: {leaked}"


def poll_until(predicate, timeout: float = 5.0, what: str = "condition", *, interval: float = 0.01):
    """Wait until ``predicate()`` is truthy and return its value, for state that has no event to
    wait on (counters, recorded lists); the deadline is scaled by REALTIME_SYNC_TIMING_SCALE."""
    import time

    deadline = time.monotonic() + T(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {T(timeout)}s")
        threading.Event().wait(interval)


def run_in_fork(child: Callable[[], list[bool]]) -> str:
    """Run ``child()`` in a forked process (the fork-safety tests) and return its checks as
    ``"1"``/``"0"`` characters, read through a pipe.  The child never returns into pytest: it
    ends with ``os._exit`` (code 3 if ``child`` raised, which fails the test here)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            os.write(w, "".join("1" if c else "0" for c in child()).encode())
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    result = os.read(r, 100).decode()
    os.close(r)
    assert os.WEXITSTATUS(status) == 0, f"the forked child failed (exit code {os.WEXITSTATUS(status)})"
    return result


def hold_dispatcher(client: Any, conn: Any) -> threading.Event:
    """Hold ``client``'s dispatcher: ``conn`` (the echo server's side of a started client's
    connection) sends a ``block`` event whose handler waits (10 s at most) until the returned
    event is set, so what arrives meanwhile waits in the client's queue."""
    release, entered = threading.Event(), threading.Event()
    client.on("block", lambda e: (entered.set(), release.wait(T(10))))
    conn.send({"event": "block"})
    assert entered.wait(T(5)), "the blocking handler did not run"
    return release


class Recorder:
    """Records every event of a client from before start(), so that a test can wait for an
    event that may already have arrived (``client.wait_for`` only sees later events).
    ``timeout`` is the default deadline of :meth:`wait` (scaled by REALTIME_SYNC_TIMING_SCALE)."""

    def __init__(self, client, pattern: str = "*", *, timeout: float = 5.0) -> None:
        self.events: list = []
        self.timeout = timeout
        self._cond = threading.Condition()
        client.on(pattern, self._record)

    def _record(self, event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def names(self) -> list[str]:
        with self._cond:
            return [e.name for e in self.events]

    def named(self, name: str) -> list:
        """The events named ``name`` recorded so far."""
        with self._cond:
            return [e for e in self.events if e.name == name]

    def wait(self, name: str, where=None, timeout: float | None = None, count: int = 1):
        """Wait until ``count`` events named ``name`` (matching ``where``) were recorded; return
        the ``count``-th."""
        deadline = T(self.timeout if timeout is None else timeout)

        def found():
            return [e for e in self.events if e.name == name and (where is None or where(e))]

        with self._cond:
            if not self._cond.wait_for(lambda: len(found()) >= count, deadline):
                raise AssertionError(
                    f"no {count}x {name!r} within {deadline}s; recorded: {[e.name for e in self.events][-20:]}"
                )
            return found()[count - 1]
