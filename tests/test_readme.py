"""Keep README.md honest: names, options, defaults, paths, CLI flags, and the first examples.

No network: the first example of each vendor runs, as written in the README (only the URL and
credential placeholders are substituted, and ``client.run_forever()`` runs in a thread that the
test ends with ``close()``), against the matching fake server of ``realtime_sync.testing``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

import realtime_sync as rs
from realtime_sync.cli import build_parser
from realtime_sync.events import LIFECYCLE_EVENTS
from realtime_sync.models.genesys import CHAT_EVENTS
from realtime_sync.protocols.voxsig import EVENT_TYPES as VOXSIG_EVENTS

from .conftest import T

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of the README section whose heading is ``title`` (up to the next heading of the
    same or a higher level)."""
    lines = README.splitlines(keepends=True)
    out: list[str] = []
    level = 0
    fenced = False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#+) (.*)\n?$", line)
        if heading and level and len(heading.group(1)) <= level:
            break
        if level:
            out.append(line)
        elif heading and heading.group(2) == title:
            level = len(heading.group(1))
    assert level, f"README has no section {title!r}"
    return "".join(out)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``text``, as lists of cells."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) >= 3, "no table found"
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows[2:]]


def ticks(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# -- names --------------------------------------------------------------------------------------


def test_every_rs_name_exists() -> None:
    names = set(re.findall(r"\brs\.([A-Za-z_]\w*)", README))
    assert names, "the README mentions no rs.<Name>"
    missing = sorted(n for n in names if not hasattr(rs, n))
    assert not missing, f"README mentions rs.{missing}, which realtime_sync does not export"


def test_every_dotted_realtime_sync_reference_resolves() -> None:
    refs = set(re.findall(r"`(realtime_sync(?:\.\w+)+)", README))
    for ref in sorted(refs):
        parts = ref.split(".")
        for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj: Any = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attr in parts[i:]:
                assert hasattr(obj, attr), f"README mentions {ref}, but {attr!r} does not exist"
                obj = getattr(obj, attr)
            break
        else:
            pytest.fail(f"README mentions {ref}, which cannot be imported")


CLIENT_CLASSES = (
    rs.Client,
    rs.ActionCableClient,
    rs.VoxsigClient,
    rs.CometDClient,
    rs.GenesysChatClient,
    rs.JifelineCustomerClient,
    rs.JifelinePartnerClient,
)


def test_every_client_attribute_exists() -> None:
    attrs_used = set(re.findall(r"\bclient\.([A-Za-z_]\w*)", README))
    missing = sorted(a for a in attrs_used if not any(hasattr(cls, a) for cls in CLIENT_CLASSES))
    # Instance attributes set in __init__ (not visible on the class).
    client = rs.JifelinePartnerClient(token="readme-test-token")
    try:
        missing = [a for a in missing if not hasattr(client, a)]
    finally:
        client.close()
    assert not missing, f"README uses client.{missing}, which no client has"


def _known_model_names() -> set[str]:
    names: set[str] = set()
    for module in (
        "realtime_sync.models.jifeline",
        "realtime_sync.models.voxsig",
        "realtime_sync.models.genesys",
        "realtime_sync.events",
        "realtime_sync.protocols.bayeux",
    ):
        names.update(n for n, o in vars(importlib.import_module(module)).items() if isinstance(o, type))
    return names


def test_event_table_names_and_models() -> None:
    rows = {row[0]: row for row in table_rows(section("Event names"))}
    voxsig = {t for t in ticks(rows["Voxsig"][1]) if "." in t}
    assert voxsig == set(VOXSIG_EVENTS), "the Voxsig event names differ from the code's"
    genesys = set(ticks(rows["Genesys"][1]))
    assert set(CHAT_EVENTS) <= genesys and {"notification", "handshake"} <= genesys
    assert tuple(ticks(rows["all"][1])[: len(LIFECYCLE_EVENTS)]) == LIFECYCLE_EVENTS
    known = _known_model_names()
    for row in rows.values():
        for name in ticks(row[2]):
            if re.fullmatch(r"[A-Z]\w+", name):
                assert name in known, f"event table names a model {name!r} that does not exist"


# -- options and signatures ---------------------------------------------------------------------


def _readme_default(text: str) -> Any:
    m = re.fullmatch(r"(\d+) MiB", text)
    if m:
        return int(m.group(1)) * 1024 * 1024
    return ast.literal_eval(text)


def _field_default(cls: type, name: str) -> Any:
    field = attrs.fields_dict(cls)[name]
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory()
    return default


def test_connection_options_table_matches_the_code() -> None:
    fields = {n: cls for cls in (rs.ConnectOptions, rs.DispatchOptions) for n in attrs.fields_dict(cls)}
    client_keywords = inspect.signature(rs.Client.__init__).parameters  # name=, ... (the client's own)
    seen: set[str] = set()
    for row in table_rows(section("Connection options")):
        names, defaults = ticks(row[0]), [d.strip() for d in row[1].split(" / ")]
        assert len(names) == len(defaults), f"row {row[0]}: {len(names)} options, {len(defaults)} defaults"
        for name, default in zip(names, defaults, strict=True):
            assert name in fields or name in client_keywords, f"option {name!r} is no option of the clients"
            assert default.startswith("`") and default.endswith("`"), f"default of {name} not in backticks"
            expected = _field_default(fields[name], name) if name in fields else client_keywords[name].default
            assert _readme_default(default.strip("`")) == expected, f"{name}: README {default}, code {expected!r}"
            seen.add(name)
    assert seen >= set(fields), f"options missing from the table: {sorted(set(fields) - seen)}"


def test_reconnect_policy_block_shows_the_defaults() -> None:
    block = next(b for b in python_blocks(section("Reconnecting")) if b.lstrip().startswith("rs.ReconnectPolicy("))
    shown = eval(block, {"rs": rs})
    assert shown == rs.ReconnectPolicy()
    call = ast.parse(block.strip(), mode="eval").body
    assert isinstance(call, ast.Call)
    assert {k.arg for k in call.keywords} == set(attrs.fields_dict(rs.ReconnectPolicy)), "not every field is shown"


def _parameters(cls: Any) -> dict[str, Any]:
    """Every keyword ``cls`` accepts, with its default (``inspect.Parameter.empty`` if none)."""
    params: dict[str, Any] = {}
    if isinstance(cls, type) and issubclass(cls, rs.Client):
        for options in (rs.ConnectOptions, rs.DispatchOptions):
            params.update({n: _field_default(options, n) for n in attrs.fields_dict(options)})
    if isinstance(cls, type):
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if init is not None:
                params.update({n: p.default for n, p in inspect.signature(init).parameters.items()})
    else:
        params.update({n: p.default for n, p in inspect.signature(cls).parameters.items()})
    return {n: d for n, d in params.items() if n not in ("self", "options", "kwargs", "args")}


def _rs_spans() -> Iterator[tuple[str, str, list[tuple[str, ast.expr | None]], bool]]:
    """Every inline ``rs.Name(...)`` span: (span, Name, [(parameter, value or None)], signature?).

    A span that parses as a parameter list (``rs.X(url, a=1, *, b=None)``) and has a parameter
    without a value or a ``*`` is a documented signature: its literal values are defaults.  Other
    spans are calls (``rs.GapRecovery(rest_url=..., hold_timeout=15)``): only their keyword names
    are checked.
    """
    for span in re.findall(r"`(rs\.\w+\([^`]*\))`", README):
        name, _, inner = span[3:].partition("(")
        try:
            fn = ast.parse(f"def _({inner[:-1]}): pass").body[0]
        except SyntaxError:
            call = ast.parse(span, mode="eval").body
            assert isinstance(call, ast.Call)
            yield span, name, [(k.arg, k.value) for k in call.keywords if k.arg], False
            continue
        assert isinstance(fn, ast.FunctionDef)
        a = fn.args
        positional = a.args
        defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
        params = list(zip((p.arg for p in positional), defaults, strict=True))
        params += list(zip((p.arg for p in a.kwonlyargs), a.kw_defaults, strict=True))
        signature = bool(a.kwonlyargs) or any(d is None for d in defaults)
        yield span, name, params, signature


def _literal(node: ast.expr) -> Any:
    """The literal value of a default, or ``inspect.Parameter.empty`` for an example (``...``, a name)."""
    if any(isinstance(n, ast.Constant) and n.value is Ellipsis for n in ast.walk(node)):
        return inspect.Parameter.empty
    try:
        return ast.literal_eval(node)
    except ValueError:
        return inspect.Parameter.empty


def test_inline_rs_spans_use_real_parameters_and_defaults() -> None:
    spans = list(_rs_spans())
    documented = {name for _s, name, _p, signature in spans if signature}
    assert {"VoxsigClient", "JifelinePartnerClient", "GenesysChatClient", "ErrorInfo"} <= documented
    for span, name, params, signature in spans:
        accepted = _parameters(getattr(rs, name))
        for param, value in params:
            assert param in accepted, f"{span}: rs.{name} takes no {param!r}"
            if signature and value is not None:
                shown = _literal(value)
                if shown is not inspect.Parameter.empty:
                    assert shown == accepted[param], f"{span}: {param} defaults to {accepted[param]!r} in the code"


# -- files and the command line ------------------------------------------------------------------


def test_every_file_path_exists() -> None:
    paths = set(re.findall(r"(?<![\w/.-])((?:samples|benchmarks|tests|\.ci|realtime_sync)/[\w./-]*\w/?)", README))
    assert "samples/flask_app.py" in paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README names files that do not exist: {missing}"


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_cli_commands_flags_and_environment_variables() -> None:
    text = section("Command line")
    parser = build_parser()
    commands = _subcommands(parser)
    for command in re.findall(r"`realtime-sync ([a-z-]+)", text):
        assert command in commands, f"README shows `realtime-sync {command}`, which does not exist"
    vendors = set(_subcommands(commands["listen"]))
    for vendor in re.findall(r"realtime-sync listen ([a-z-]+)", text):
        assert vendor in vendors, f"README listens to vendor {vendor!r}, which does not exist"
    for vendor in ticks(text.split("Vendors:", 1)[1].split("\n\n", 1)[0]):
        assert vendor in vendors
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))
    unknown = sorted(flags - _option_strings(parser))
    assert not unknown, f"README names CLI flags that do not exist: {unknown}"
    source = (ROOT / "realtime_sync" / "cli.py").read_text() + (ROOT / "realtime_sync/contrib/_common.py").read_text()
    env_vars = set(re.findall(r"\b((?:JIFELINE|VOXSIG|GENESYS|REALTIME_SYNC)_[A-Z_]+)\b", text))
    assert "VOXSIG_PUBSUB_TOKEN" in env_vars
    unknown = sorted(v for v in env_vars if f'"{v}"' not in source)
    assert not unknown, f"README names environment variables the CLI does not read: {unknown}"


# -- the first example of each vendor, run against the fake servers ----------------------------


def first_example(client_class: str) -> str:
    blocks = [b for b in python_blocks(section("A first example, per vendor")) if f"rs.{client_class}" in b]
    assert len(blocks) == 1, f"expected one first example using rs.{client_class}"
    return blocks[0]


def substitute(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in code, f"the example no longer contains {old!r}; update this test"
        code = code.replace(old, new)
    code, n = re.subn(r"^client\.run_forever\(\).*$", "", code, flags=re.M)
    assert n == 1, "the example should end with client.run_forever()"
    return code


class Printed:
    """Stands in for print() in the example: records the calls and lets the test wait for them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._cond = threading.Condition()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        with self._cond:
            self.calls.append(args)
            self._cond.notify_all()

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[tuple[Any, ...]]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.calls) >= count, T(timeout))
            assert ok, f"the example's handler printed {len(self.calls)} time(s) within {T(timeout)}s, expected {count}"
            return list(self.calls)


@contextmanager
def run_example(code: str, **names: Any) -> Iterator[tuple[Any, Printed]]:
    """Exec the example (without run_forever), then run ``client.run_forever()`` in a thread;
    on the way out, close the client and check that run_forever() returned."""
    printed = Printed()
    namespace: dict[str, Any] = {"rs": rs, "print": printed, **names}
    exec(compile(code, "<README example>", "exec"), namespace)
    client = namespace["client"]
    thread = threading.Thread(target=client.run_forever, name="readme-run_forever", daemon=True)
    try:
        thread.start()
        yield client, printed
    finally:
        client.close(timeout=T(10))
        thread.join(T(10))
    assert not thread.is_alive(), "run_forever() did not return after close()"


def _wait(predicate: Callable[[], bool], server: Any, timeout: float = 10.0) -> None:
    server.wait_until(predicate, timeout=T(timeout))


def test_voxsig_first_example_runs() -> None:
    from realtime_sync.testing import FakeVoxsigServer
    from realtime_sync.testing.actioncable import message_payload

    code = substitute(first_example("VoxsigClient"), {'"wss://app.voxsig.com/cable"': "URL"})
    with FakeVoxsigServer() as server:
        with run_example(code, URL=server.url, TOKEN="user-token-1") as (_client, printed):
            server.wait_for_subscription("user-token-1", timeout=T(10))
            server.send_event("user-token-1", "message.created", message_payload(5, conversation_id=42, content="Hi"))
            assert printed.wait(1) == [(42, "Hi")]


def test_jifeline_customer_first_example_runs() -> None:
    from realtime_sync.testing import FakeJifelineCustomerServer

    code = substitute(first_example("JifelineCustomerClient"), {'"wss://<customer websocket of your cluster>"': "URL"})
    with FakeJifelineCustomerServer(token="readme-customer-token", interval=0.1) as server:
        with run_example(code, URL=server.url, TOKEN="readme-customer-token") as (_client, printed):
            # The first snapshot counts as a change of every field; unchanged ones are not printed.
            first = printed.wait(1)[0]
            assert first[0] == 32423 and "state" in first[1] and first[2] == 1
            server.update_ticket(32423, state=2)
            assert printed.wait(2)[1] == (32423, ["state"], 2)


def test_jifeline_partner_first_example_runs() -> None:
    from realtime_sync.testing import FakeJifelinePartnerServer, FakeJifelineRestServer

    # token=() : the partner fake accepts only the tokens its REST fake issues (OAuth2).
    with (
        FakeJifelinePartnerServer(token=()) as partner,
        FakeJifelineRestServer("readme-client", "readme-secret-123", partner=partner) as rest,
    ):
        call = "from_client_credentials(CLIENT_ID, CLIENT_SECRET)"
        code = substitute(
            first_example("JifelinePartnerClient"),
            {
                call: f"from_client_credentials(CLIENT_ID, CLIENT_SECRET, token_url={rest.token_url!r}, url={partner.url!r})"
            },
        )
        names = {"CLIENT_ID": "readme-client", "CLIENT_SECRET": "readme-secret-123"}
        with run_example(code, **names) as (_client, printed):
            _wait(lambda: ("event", "tickets.ticket.created") in partner.subscriptions(), partner)
            frame = partner.emit_event("tickets.ticket.created")
            assert printed.wait(1) == [("tickets.ticket.created", frame["event_id"], frame["message"]["ticket"]["id"])]
        assert rest.token_requests() >= 1


def test_genesys_first_example_runs() -> None:
    from realtime_sync.testing import FakeGenesysServer

    code = substitute(first_example("GenesysChatClient"), {'"https://gws.example.com/api/v2/notifications"': "URL"})
    # websocket=False: like GWS 8.5, so the example goes through the long-polling fallback.
    with FakeGenesysServer(basic_auth=("agent1", "readme-password"), websocket=False, timeout=1.0) as gws:
        with run_example(code, URL=gws.http_url, PASSWORD="readme-password") as (_client, printed):
            gws.wait_for_subscription("/v2/me/chats", timeout=T(10))
            gws.new_messages("chat-7", ["hello", "world"], start_index=3)
            assert printed.wait(2) == [("chat-7", 3, "Agent1", "hello"), ("chat-7", 4, "Agent1", "world")]


def test_no_snippet_waits_for_a_lifecycle_event_that_may_have_passed() -> None:
    # wait_for() sees only events after the call: after start() (or `with client:`), "connected"
    # or "subscribed" may already be over, and the wait times out on a healthy client.  The
    # README and the docstrings use start(wait=True) / wait_connected() instead.
    racy = re.compile(r"""wait_for\(\s*["'](connected|subscribed|handshake)["']""")
    sources = {"README.md": README}
    for path in sorted((ROOT / "realtime_sync").rglob("*.py")):
        sources[str(path.relative_to(ROOT))] = path.read_text()
    found = [f"{where}: {m.group(0)}" for where, text in sources.items() for m in racy.finditer(text)]
    assert not found, found
