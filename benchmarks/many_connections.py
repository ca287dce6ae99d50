"""Many connections in one process: the hub, standalone clients and an asyncio anchor, side by side.

    python benchmarks/many_connections.py                       # ActionCable, N=1000 (standalone: 300)
    python benchmarks/many_connections.py --scenario actioncable --n 10000 --standalone-max 300
    python benchmarks/many_connections.py --scenario jifeline --n 10000
    python benchmarks/many_connections.py --scenario bayeux --n 1000 --standalone-max 200
    python benchmarks/many_connections.py --contenders asyncio,standalone --no-restart --quick

For each contender (in its own process, against a fresh server in another process, see
``_many_servers.py``) it measures, for N connections:

* **connect**: seconds from the first ``start()`` until every client is subscribed (ActionCable:
  ``confirm_subscription``; Jifeline: the first snapshot; Bayeux: the ``/meta/subscribe`` reply);
* **threads** in the client process once connected (``/proc/self/status``);
* **RSS/conn**: the process's resident memory after the idle window minus before the first client
  was made, divided by N (KiB);
* **idle CPU**: user + system CPU time of the client process over an idle window (server pings
  every 3 s for ActionCable; client websocket pings for Jifeline; held connects for Bayeux), as
  % of one core, and scaled to 1,000 connections;
* **recovery**: the server is stopped (SIGTERM: ActionCable says ``server_restart`` first) and
  started again on the same port; seconds from the stop until every client is subscribed again;
  and whether the server saw more connections refused than zero (it never refuses here, but the
  kernel's accept backlog can overflow: counted from the clients' connect errors);
* **close**: seconds for closing all clients, and the threads left afterwards;
* **throughput** (``--throughput M``, with ``--rounds`` alternating the contenders): the server
  writes M ``message.created`` broadcasts to every connection at once; messages per second until
  the handlers saw them all, CPU per message, and per kind of thread (hub loop, hub workers,
  standalone transports, dispatchers) the share of a core it used and the share of the run it
  spent runnable but waiting for a CPU (``/proc/self/task/*/schedstat``): where the time went.
  ``--cpu-hogs K`` runs K busy-looping processes meanwhile (CPU contention, reproducibly).

Contenders: ``hub`` (``rs.Hub``, when the library has it), ``standalone`` (one realtime_sync
client per connection, as today: two threads each, four for long-polling; run up to
``--standalone-max`` connections, the number they manage), and ``asyncio`` (python-websockets'
asyncio client holding the same N, the anchor of the issue; for Bayeux a hand-written asyncio
long-polling loop, since python-websockets has no HTTP client).

Limits: 10,000 client sockets and 10,000 server sockets need RLIMIT_NOFILE above the usual 1,024
(both processes raise their own soft limit to the hard one, and to 65,536 when run as root).  All
connections go to one server port on 127.0.0.1: one (address, port) pair has about 28,000
ephemeral ports, enough for 10,000 connections and a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def raise_nofile(want: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in ((max(want, soft), max(want, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, target)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def thread_cpu(field: int = 0) -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads, summed by role (``realtime_sync-hub-loop``,
    ``realtime_sync-hub-worker``, ``realtime_sync-transport``, ``realtime_sync-dispatch``...)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:  # schedstat: nanoseconds on a CPU (stat's clock ticks are too coarse per thread)
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[field])
        except (OSError, ValueError, IndexError):
            continue
        name = names.get(int(tid), "other")
        parts = name.split("-")  # realtime_sync-hub-worker-2, realtime_sync-transport-voxsig-7
        role = "-".join(parts[:3] if parts[1:2] == ["hub"] else parts[:2]).rstrip("0123456789-")
        out[role] = out.get(role, 0.0) + ns / 1e9
    return out


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- contenders (run in the child process) ----------------------------------------------------


class Counter:
    """Which clients subscribed since the last reset (any thread)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.lock = threading.Lock()
        self.seen: set[int] = set()
        self.errors = 0
        self.refused = 0
        self.drops = 0  # disconnected events (a stale connection replaced, a server drop)
        self.messages = 0
        self.messages_lock = threading.Lock()

    def message(self) -> None:
        with self.messages_lock:
            self.messages += 1

    def mark(self, i: int) -> None:
        with self.lock:
            self.seen.add(i)

    def count(self) -> int:
        return len(self.seen)

    def reset(self) -> None:
        with self.lock:
            self.seen = set()


class RsContender:
    """realtime_sync clients, standalone or on a hub."""

    def __init__(self, scenario: str, url: str, n: int, counter: Counter, kind: str, workers: int) -> None:
        import realtime_sync as rs

        self.rs = rs
        self.scenario = scenario
        self.url = url
        self.n = n
        self.counter = counter
        self.hub = None
        if kind == "hub":
            self.hub = rs.Hub(workers=workers)
        elif kind == "hub-threads":
            # The hub's connect path before non-blocking handshakes: every handshake blocks on
            # one of the two handshake threads, at most two in flight (the before of an A/B).
            hub = self.hub = rs.Hub(workers=workers, max_handshakes=2)
            loop: Any = hub.loop
            loop.open_connection = lambda conn, request, options, open_it, done: loop.run_blocking(open_it, done)
        self.clients: list[Any] = []

    def make(self, i: int) -> Any:
        rs = self.rs
        kw: dict[str, Any] = {"hub": self.hub} if self.hub is not None else {}
        if self.scenario == "actioncable":
            c = rs.VoxsigClient(
                self.url, pubsub_token=f"token-{i}", account_id=1, user_id=i, presence_interval=None, **kw
            )
        elif self.scenario == "jifeline":
            c = rs.JifelineCustomerClient(self.url, token=f"token-{i}", **kw)
            c.subscribe_ticket(i + 1)
        else:
            c = rs.GenesysChatClient(self.url, transport="long-polling", **kw)
        mark = self.counter.mark

        def on_subscribed(event: Any, i: int = i) -> None:
            mark(i)

        def on_error(event: Any) -> None:
            self.counter.errors += 1
            msg = str(getattr(event.data, "message", event.data))
            if "refused" in msg.lower():
                self.counter.refused += 1

        def on_message(event: Any) -> None:
            if event.data.content:  # read one field, as a handler would
                self.counter.message()

        def on_disconnected(event: Any) -> None:
            self.counter.drops += 1

        c.on("subscribed", on_subscribed)
        c.on("error", on_error)
        c.on("disconnected", on_disconnected)
        if self.scenario == "actioncable":
            c.on("message.created", on_message)
        return c

    def start(self) -> None:
        for i in range(self.n):
            c = self.make(i)
            self.clients.append(c)
            c.start()

    def close(self) -> None:
        if self.hub is not None:
            self.hub.close(timeout=60)
            return
        # Close in parallel batches: each close joins two threads.
        threads = []
        chunk = max(1, len(self.clients) // 16)
        for k in range(0, len(self.clients), chunk):
            part = self.clients[k : k + chunk]
            t = threading.Thread(target=lambda part=part: [c.close(timeout=10) for c in part])
            t.start()
            threads.append(t)
        for t in threads:
            t.join()


class AsyncioContender:
    """python-websockets' asyncio client (ActionCable, Jifeline) / an asyncio long-polling loop
    (Bayeux) holding the same connections: the anchor.  One loop on one thread."""

    def __init__(self, scenario: str, url: str, n: int, counter: Counter) -> None:
        self.scenario = scenario
        self.url = url
        self.n = n
        self.counter = counter
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="asyncio-anchor", daemon=True)
        self.tasks: list[asyncio.Task[Any]] = []
        self.thread.start()

    def start(self) -> None:
        async def go() -> None:
            for i in range(self.n):
                self.tasks.append(asyncio.ensure_future(self.one(i)))

        asyncio.run_coroutine_threadsafe(go(), self.loop).result()

    async def one(self, i: int) -> None:
        if self.scenario == "bayeux":
            await self.bayeux(i)
            return
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        if self.scenario == "actioncable":
            kw: dict[str, Any] = {"subprotocols": ["actioncable-v1-json"], "ping_interval": None}
            ident = json.dumps({"channel": "RoomChannel", "pubsub_token": f"token-{i}", "account_id": 1, "user_id": i})
            hello = None
        else:
            kw = {"ping_interval": 20, "ping_timeout": 10}
            ident = ""
            hello = json.dumps({"action": "subscribeToTicket", "ticket_id": i + 1})
        async for ws in connect(self.url, compression=None, open_timeout=120, max_queue=16, **kw):
            try:
                if hello is not None:
                    await ws.send(hello)
                async for text in ws:
                    msg = json.loads(text)
                    if self.scenario == "actioncable":
                        t = msg.get("type")
                        if t == "welcome":
                            await ws.send(json.dumps({"command": "subscribe", "identifier": ident}))
                        elif t == "confirm_subscription":
                            self.counter.mark(i)
                        elif t is None and isinstance(msg.get("message"), dict):
                            if msg["message"]["data"]["content"]:
                                self.counter.message()
                    elif msg.get("action") == "subscribeToTicket":
                        self.counter.mark(i)
            except ConnectionClosed:
                continue

    async def bayeux(self, i: int) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        backoff = 0.0
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                backoff = min(backoff + 1.0, 10.0)
                await asyncio.sleep(backoff * random.random())
                continue
            try:

                async def post(
                    messages: list[dict[str, Any]], reader: Any = reader, writer: Any = writer
                ) -> list[dict[str, Any]]:
                    body = json.dumps(messages).encode()
                    writer.write(
                        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    return json.loads(await reader.readexactly(length))  # type: ignore[no-any-return]

                [hs] = await post(
                    [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}]
                )
                cid = hs["clientId"]
                await post(
                    [
                        {
                            "channel": "/meta/connect",
                            "clientId": cid,
                            "connectionType": "long-polling",
                            "advice": {"timeout": 0},
                        }
                    ]
                )
                [sub] = await post([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/v2/me/chats"}])
                if sub.get("successful"):
                    self.counter.mark(i)
                backoff = 0.0
                while True:
                    replies = await post(
                        [{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}]
                    )
                    if any(r.get("advice", {}).get("reconnect") == "handshake" for r in replies):
                        break
            except (OSError, asyncio.IncompleteReadError, ValueError, KeyError):
                backoff = min(backoff + 1.0, 10.0)
                await asyncio.sleep(backoff * random.random())
            finally:
                writer.close()

    def close(self) -> None:
        async def stop() -> None:
            for t in self.tasks:
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def child(args: argparse.Namespace) -> None:
    """One contender in this process; talks to the parent with JSON lines on stdout/stdin."""
    raise_nofile()

    def out(tag: str, **data: Any) -> None:
        print(tag + " " + json.dumps(data), flush=True)

    def wait_all(counter: Counter, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if counter.count() >= counter.n:
                return True
            time.sleep(0.05)
        return counter.count() >= counter.n

    counter = Counter(args.n)
    contender: Any
    if args.child == "asyncio":
        import websockets  # noqa: F401  imported before the baseline, as realtime_sync is

        contender = AsyncioContender(args.scenario, args.url, args.n, counter)
    else:
        import realtime_sync  # noqa: F401

        contender = None
    time.sleep(0.5)
    rss0, threads0 = proc_status("VmRSS"), proc_status("Threads")
    t0, cpu0 = time.monotonic(), cpu_seconds()
    if contender is None:
        contender = RsContender(args.scenario, args.url, args.n, counter, args.child, args.workers)
    contender.start()
    ok = wait_all(counter, t0 + args.connect_deadline)
    t_connect = time.monotonic() - t0
    out(
        "CONNECTED",
        seconds=round(t_connect, 2),
        cpu_seconds=round(cpu_seconds() - cpu0, 2),
        subscribed=counter.count(),
        ok=ok,
        errors=counter.errors,
        load=os.getloadavg()[0],
    )
    time.sleep(args.settle)
    threads = proc_status("Threads")
    c0, w0 = cpu_seconds(), time.monotonic()
    time.sleep(args.idle)
    c1, w1 = cpu_seconds(), time.monotonic()
    rss1 = proc_status("VmRSS")
    cpu_pct = 100.0 * (c1 - c0) / (w1 - w0)
    out(
        "IDLE",
        threads=threads,
        threads_before=threads0,
        rss_kib_per_conn=round((rss1 - rss0) / args.n, 1),
        rss_mib=round(rss1 / 1024, 1),
        cpu_pct=round(cpu_pct, 2),
        cpu_pct_per_1000=round(cpu_pct * 1000 / args.n, 2),
        still_subscribed=counter.count(),
        load=os.getloadavg()[0],
    )
    line = sys.stdin.readline().strip()
    if line.startswith("throughput"):
        total = args.n * int(line.split()[1])
        with counter.messages_lock:
            counter.messages = 0
        errors0, drops0 = counter.errors, counter.drops
        out("ARMED")
        t_go = float(sys.stdin.readline().strip())
        c0, th0, rq0 = cpu_seconds(), thread_cpu(), thread_cpu(1)
        deadline = t_go + 300
        while counter.messages < total and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - t_go
        th1, rq1 = thread_cpu(), thread_cpu(1)
        out(
            "THROUGHPUT",
            # Share of one core each kind of thread used over the run (where the time goes).
            threads_core={k: round((v - th0.get(k, 0.0)) / elapsed, 2) for k, v in th1.items() if v > th0.get(k, 0.0)},
            # Share of the run each kind spent runnable but waiting for a CPU (the scheduler's delay).
            threads_waiting={
                k: round((v - rq0.get(k, 0.0)) / elapsed, 2) for k, v in rq1.items() if v > rq0.get(k, 0.0)
            },
            messages=counter.messages,
            ok=counter.messages >= total,
            seconds=round(elapsed, 2),
            rate=round(counter.messages / elapsed),
            cpu_us_per_message=round((cpu_seconds() - c0) * 1e6 / max(1, counter.messages), 1),
            errors=counter.errors - errors0,
            drops=counter.drops - drops0,
            load=os.getloadavg()[0],
        )
        line = sys.stdin.readline().strip()
    if line.startswith("restart"):
        counter.reset()
        errors0, refused0 = counter.errors, counter.refused
        out("ARMED")
        t_stop = float(sys.stdin.readline().strip())  # the parent's monotonic time of the stop
        ok = wait_all(counter, t_stop + args.recover_deadline)
        out(
            "RECOVERED",
            seconds=round(time.monotonic() - t_stop, 2),
            subscribed=counter.count(),
            ok=ok,
            errors=counter.errors - errors0,
            refused=counter.refused - refused0,
        )
        sys.stdin.readline()
    t = time.monotonic()
    contender.close()
    out("CLOSED", seconds=round(time.monotonic() - t, 2), threads_left=proc_status("Threads"))


# -- the parent ---------------------------------------------------------------------------------


class Server:
    def __init__(self, scenario: str, port: int = 0, timeout: float = 30.0) -> None:
        cmd = [sys.executable, str(HERE / "_many_servers.py"), scenario, "--port", str(port), "--timeout", str(timeout)]
        # asyncio reports every handler task cancelled by a restart: noise unless asked for.
        err = None if os.environ.get("BENCH_SERVER_STDERR") else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(line.split()[1])

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Child:
    def __init__(self, args: argparse.Namespace, contender: str, url: str, n: int) -> None:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            contender,
            "--scenario",
            args.scenario,
            "--url",
            url,
            "--n",
            str(n),
            "--idle",
            str(args.idle),
            "--settle",
            str(args.settle),
            "--workers",
            str(args.workers),
            "--connect-deadline",
            str(args.connect_deadline),
            "--recover-deadline",
            str(args.recover_deadline),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def expect(self, tag: str, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {tag} from the contender")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the contender exited before {tag} (rc={self.proc.wait()})")
            head, _, body = line.partition(" ")
            if head == tag:
                return json.loads(body)  # type: ignore[no-any-return]
            print("   ", line.rstrip(), file=sys.stderr)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()


def run_one(args: argparse.Namespace, contender: str, n: int) -> dict[str, Any]:
    server = Server(args.scenario, timeout=args.bayeux_timeout)
    scheme = "http" if args.scenario == "bayeux" else "ws"
    path = {"actioncable": "/cable", "jifeline": "/ws", "bayeux": "/api/v2/notifications"}[args.scenario]
    url = f"{scheme}://127.0.0.1:{server.port}{path}"
    child = Child(args, contender, url, n)
    row: dict[str, Any] = {"contender": contender, "n": n}
    try:
        row["connect"] = child.expect("CONNECTED", args.connect_deadline + 60)
        row["idle"] = child.expect("IDLE", args.idle + args.settle + 120)
        if args.throughput:
            child.send(f"throughput {args.throughput}")
            child.expect("ARMED", 30)
            child.send(repr(time.monotonic()))
            server.send(f"blast {args.throughput}")
            row["throughput"] = child.expect("THROUGHPUT", 400)
        if args.restart:
            child.send("restart")
            child.expect("ARMED", 30)
            t_stop = time.monotonic()
            server.stop()
            server = Server(args.scenario, port=server.port, timeout=args.bayeux_timeout)
            child.send(repr(t_stop))
            row["recovery"] = child.expect("RECOVERED", args.recover_deadline + 60)
        child.send("close")
        row["close"] = child.expect("CLOSED", 180)
    except (TimeoutError, RuntimeError) as exc:
        row["failed"] = str(exc)
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
        child.proc.wait()
        server.stop()
    return row


def fmt(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    tp = any("throughput" in r for r in rows)
    head = (
        "| contender | N | connect+subscribe (s) | client CPU to connect (s) | threads | RSS/conn (KiB) |"
        " idle CPU (% core) | idle CPU per 1,000 |"
        + (" throughput msgs/s (CPU µs/msg) |" if tp else "")
        + " recovery after restart (s) | close (s) / threads left | load avg (connect, idle) |"
    )
    lines = [head, "|" + "---|" * head.count(" |")]
    for r in rows:
        c, i, rec, cl = r.get("connect", {}), r.get("idle", {}), r.get("recovery"), r.get("close", {})
        tp_s = ""
        if tp:
            t = r.get("throughput")
            tp_s = (
                " — |"
                if t is None
                else f" {t['rate']:,}{'' if t['ok'] else ' (incomplete)'} ({t['cpu_us_per_message']})"
                + (f", {t['drops']} drops" if t.get("drops") else "")
                + " |"
            )
        rec_s = (
            "—" if rec is None else (f"{rec['seconds']}" + ("" if rec["ok"] else f" ({rec['subscribed']}/{r['n']})"))
        )
        conn_s = "—" if not c else (f"{c['seconds']}" + ("" if c["ok"] else f" ({c['subscribed']}/{r['n']})"))
        load = f"{c.get('load', 0):.1f}, {i.get('load', 0):.1f}" if c else "—"
        lines.append(
            f"| {r['contender']} | {r['n']:,} | {conn_s} | {c.get('cpu_seconds', '—')} | {i.get('threads', '—')} |"
            f" {i.get('rss_kib_per_conn', '—')} | {i.get('cpu_pct', '—')} | {i.get('cpu_pct_per_1000', '—')} |{tp_s}"
            f" {rec_s} | {cl.get('seconds', '—')} / {cl.get('threads_left', '—')} | {load} |"
            + (f" FAILED: {r['failed']}" if "failed" in r else "")
        )
    return "\n".join(lines)


def fmt_rounds(rows: list[dict[str, Any]]) -> str:
    """Throughput per round, and the hub's rate over the standalone clients' in the same round."""
    out = ["| round | " + " | ".join(sorted({r["contender"] for r in rows})) + " | hub / standalone |"]
    out.append("|" + "---|" * (out[0].count(" |")))
    for k in sorted({r["round"] for r in rows}):
        got = {r["contender"]: r.get("throughput") for r in rows if r["round"] == k}
        cells = []
        for name in sorted(got):
            t = got[name]
            if t is None:
                cells.append("failed")
                continue
            cores = sum(t.get("threads_core", {}).values())
            waiting = sum(t.get("threads_waiting", {}).values())
            cells.append(
                f"{t['rate']:,} msgs/s, {t['cpu_us_per_message']} µs/msg, {cores:.2f} cores"
                f" (+{waiting:.2f} runnable, waiting for a CPU), load {t['load']:.1f}"
            )
        h, sa = got.get("hub"), got.get("standalone")
        ratio = f"{h['rate'] / sa['rate']:.2f}" if h and sa and h["ok"] and sa["ok"] else "—"
        out.append(f"| {k} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=["actioncable", "jifeline", "bayeux"], default="actioncable")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--standalone-max", type=int, default=300)
    p.add_argument("--contenders", default="hub,standalone,asyncio")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--idle", type=float, default=15.0, help="idle window (s)")
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--connect-deadline", type=float, default=180.0)
    p.add_argument("--recover-deadline", type=float, default=120.0)
    p.add_argument("--bayeux-timeout", type=float, default=30.0)
    p.add_argument("--no-restart", dest="restart", action="store_false")
    p.add_argument(
        "--throughput",
        type=int,
        default=0,
        help="actioncable: after the idle window, the server sends this many message.created to every"
        " connection; the rate at which the handlers see them all (use with --n 100)",
    )
    p.add_argument(
        "--rounds", type=int, default=1, help="run the contenders this many times, alternating (for throughput)"
    )
    p.add_argument(
        "--cpu-hogs",
        type=int,
        default=0,
        help="run this many busy-looping processes (each in a session of its own) for the whole run:"
        " CPU contention from other work, reproducibly",
    )
    p.add_argument("--quick", action="store_true", help="short windows (smoke run)")
    p.add_argument(
        "--write",
        action="store_true",
        help="also write the table to benchmarks/results_many_<scenario>.md (benchmarks/results.md is throughput.py's)",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.idle, args.settle = 5.0, 1.0
    raise_nofile()
    rows = []
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range(args.cpu_hogs)
    ]
    try:
        run_rounds(args, rows)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    load = os.getloadavg()[0]
    print(
        f"\n{args.scenario}: idle window {args.idle:g} s; {os.cpu_count()} CPUs, load average {load:.1f} at the end;"
        f" CPython {platform.python_version()}"
        + (f"; {args.cpu_hogs} CPU hogs running" if args.cpu_hogs else "")
        + "\n"
    )
    table = fmt(rows, args)
    print(table)
    if args.rounds > 1 and args.throughput:
        table += "\n\n" + fmt_rounds(rows)
        print()
        print(fmt_rounds(rows))
    if args.write:
        head = (
            f"`python benchmarks/many_connections.py {' '.join(sys.argv[1:])}`: {args.scenario}, idle window"
            f" {args.idle:g} s; {os.cpu_count()} CPUs, load average {load:.1f} at the end; CPython"
            f" {platform.python_version()}, {platform.platform()}.\n\n"
        )
        (HERE / f"results_many_{args.scenario}.md").write_text(head + table + "\n")


def run_rounds(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    for k in range(1, args.rounds + 1):
        for contender in args.contenders.split(","):
            n = min(args.n, args.standalone_max) if contender == "standalone" else args.n
            if contender.startswith("hub"):
                sys.path.insert(0, str(ROOT))
                import realtime_sync as rs

                if not hasattr(rs, "Hub"):
                    print("(no rs.Hub in this realtime_sync: hub skipped)", file=sys.stderr)
                    continue
            print(f"-- {args.scenario}: {contender}, N={n}, round {k}", file=sys.stderr)
            row = run_one(args, contender, n)
            row["round"] = k
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)


if __name__ == "__main__":
    main()
