"""Console push benchmark: 200 agents' browsers hold live-event streams (SSE) open while
events are published from another process; how long from publish to receipt, and what each
open stream costs in memory.

Targets, in one run, on PostgreSQL (events cross processes through ``LISTEN/NOTIFY``) or, with
``--database sqlite``, on a SQLite file (through the ``bus_events`` table every process reads):

* ``console``: the hotline served the way the README serves it (``callcenter serve``:
  gunicorn, gthread, ``web.workers`` processes with ``web.threads + web.max_streams`` threads
  each). Every client is a signed-in agent (real sign-in form, CSRF, server-side session) on
  ``GET /events``; each event goes to one agent's topic, as an offer does.
* ``minimal-sse``: the baseline: a bare WSGI app under the same gunicorn settings whose
  ``/events?topic=...`` subscribes to the same bus and writes what arrives: no
  Flask, no sign-in, no session checks, no role filter.
* ``in-process``: the floor: the same number of subscribers on an in-process fan-out in this
  process (one thread blocked in ``get`` per subscriber): queue hand-off only.

The publisher (this process, not a server process) sends ``--events`` events round-robin to
the agents at ``--rate`` per second (``paced``), then bursts of one event to every agent at
once (``burst``). Each event carries its send time; clients are read by one thread with
``selectors``, so the receipt time is taken as soon as the bytes arrive. Memory per stream:
the servers' resident memory (master and workers) with every client connected, minus before
any connected, divided by the number of clients.

    .venv/bin/python bench/console_push.py [--clients 200] [--events 1000] [--rate 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
PASSWORD = "bench-password-0123"
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
_MARK = re.compile(rb'"seq": ?(\d+), ?"sent": ?([0-9.]+)')

# ------------------------------------------------------------------ the baseline server


def baseline_application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    """A minimal SSE server on the same bus: ``GET /events?topic=<topic>``."""
    from urllib.parse import parse_qs

    bus = _baseline_bus()
    if environ.get("PATH_INFO") != "/events":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    topic = parse_qs(environ.get("QUERY_STRING", "")).get("topic", ["x"])[0]
    sub = bus.subscribe([topic])
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-store")])

    def body() -> Iterator[bytes]:
        try:
            yield b"retry: 3000\n\nevent: hello\ndata: {}\n\n"
            while True:
                ev = sub.get(15.0)
                if ev is None:
                    yield b": heartbeat\n\n"
                elif not ev.is_resync:
                    kind = ev.data.get("kind", "message")
                    yield f"event: {kind}\ndata: {json.dumps(ev.data)}\n\n".encode()
        finally:
            sub.close()

    return body()


_BUS: Any = None
_BUS_LOCK = threading.Lock()


def _baseline_bus() -> Any:
    global _BUS
    with _BUS_LOCK:
        if _BUS is None:
            from callcenter.db.engine import Database
            from callcenter.events import for_database

            _BUS = for_database(Database.from_url(os.environ["BENCH_DB_URL"]))
        return _BUS


# ------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children (gunicorn master and workers)."""
    total = 0
    pids = [pid]
    with suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


@contextmanager
def server(cmd: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else "died"
                    raise RuntimeError(err) from None
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        time.sleep(1.5)  # let every worker boot
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def sign_in(port: int, username: str) -> str:
    """Sign in through the form; returns the session cookie."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/auth/sign-in")
    resp = conn.getresponse()
    page = resp.read().decode()
    cookie = _cookie(resp.getheaders())
    match = _CSRF.search(page)
    assert match, "no csrf token on the sign-in page"
    from urllib.parse import urlencode

    body = urlencode({"csrf_token": match.group(1), "username": username, "password": PASSWORD})
    conn.request(
        "POST",
        "/auth/sign-in",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
    )
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 302, f"sign-in failed: HTTP {resp.status}"
    conn.close()
    return _cookie(resp.getheaders()) or cookie


def _cookie(headers: Iterable[tuple[str, str]]) -> str:
    found = ""
    for name, value in headers:
        if name.lower() == "set-cookie" and value.startswith("session="):
            found = value.split(";", 1)[0]
    return found


class Clients:
    """N open event streams read by one thread; records (seq, latency) per received event."""

    def __init__(self, port: int, paths: list[str], cookies: list[str]) -> None:
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.received: dict[int, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.refused = 0
        self.socks: list[socket.socket] = []
        for path, cookie in zip(paths, cookies, strict=True):
            self.socks.append(self._open(path, cookie))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self, path: str, cookie: str) -> socket.socket:
        for _attempt in range(20):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            request = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                + (f"Cookie: {cookie}\r\n" if cookie else "")
                + "\r\n"
            )
            sock.sendall(request.encode())
            head = b""
            while b"event: hello" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
            if b" 200 " in head.split(b"\r\n", 1)[0] and b"event: hello" in head:
                sock.setblocking(False)
                self.sel.register(sock, selectors.EVENT_READ, bytearray())
                return sock
            self.refused += 1  # 503 (all stream slots of that worker in use): retry
            sock.close()
            time.sleep(0.2)
        raise RuntimeError(f"could not open {path}")

    def _run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                now = time.time()
                if not data:
                    self.sel.unregister(sock)
                    continue
                buf: bytearray = key.data
                buf += data
                end = buf.rfind(b"\n\n")
                if end < 0:
                    continue
                for m in _MARK.finditer(bytes(buf[: end + 2])):
                    with self.lock:
                        self.received[int(m.group(1))] = now - float(m.group(2))
                del buf[: end + 2]

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()


def percentiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000, max(values) * 1000


def publish_run(
    publish: Callable[[int, int], None],
    received: Callable[[], dict[int, float]],
    clients: int,
    events: int,
    rate: float,
    bursts: int,
) -> dict[str, Any]:
    """Paced events round-robin, then bursts of one event per client; latencies by seq."""
    start = len(received())
    seq = 0
    t0 = time.perf_counter()
    for n in range(events):
        due = t0 + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        publish(seq, n % clients)
        seq += 1
    paced_last = seq
    time.sleep(1.0)
    for _ in range(bursts):
        for c in range(clients):
            publish(seq, c)
            seq += 1
        time.sleep(1.0)
    deadline = time.time() + 10
    while len(received()) - start < seq and time.time() < deadline:
        time.sleep(0.1)
    got = received()
    paced = [got[s] for s in range(paced_last) if s in got]
    burst = [got[s] for s in range(paced_last, seq) if s in got]
    return {"sent": seq, "lost": seq - len(paced) - len(burst), "paced": paced, "burst": burst}


def report(name: str, result: dict[str, Any], per_stream_kib: float | None) -> None:
    for mode in ("paced", "burst"):
        values = result[mode]
        if len(values) < 2:
            print(f"{name:>12} {mode:>6}: too few events received")
            continue
        p50, p99, worst = percentiles(values)
        mem = f"  {per_stream_kib:6.1f} KiB/stream" if per_stream_kib is not None else ""
        print(
            f"{name:>12} {mode:>6}: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {worst:6.1f} ms"
            f"  ({len(values)} events){mem}"
        )
    if result["lost"]:
        print(f"{name:>12}: !! {result['lost']} of {result['sent']} events not received")


# ------------------------------------------------------------------ the run


def prepare(url_admin: str, kind: str, workdir: Path) -> str:
    from callcenter.db.engine import make_engine
    from callcenter.db.migrate import upgrade

    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'push.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url
    name = f"bench_push_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url_admin)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name} LOCALE 'C.UTF-8' TEMPLATE template0"))
    admin.dispose()
    url = url_admin.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def drop(url_admin: str, url: str) -> None:
    from callcenter.db.engine import make_engine

    if not url.startswith("postgresql"):
        return
    admin = make_engine(url_admin)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)"))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--events", type=int, default=1000, help="paced events")
    parser.add_argument("--rate", type=float, default=50.0, help="paced events per second")
    parser.add_argument("--bursts", type=int, default=5, help="bursts of one event per client")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args()

    from callcenter.bootstrap import build
    from callcenter.config import load_config
    from callcenter.db.engine import Database
    from callcenter.events import InProcessBus, for_database, topics

    admin_url = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    workdir = Path(tempfile.mkdtemp(prefix="bench-push-"))
    url = prepare(admin_url, args.database, workdir)
    port = free_port()
    env = {
        **os.environ,
        "TWILIO_AUTH_TOKEN": "bench-auth-token",
        "SECRET_KEY": "bench-secret",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "CALLCENTER_DATABASE_URL": url,
        "CALLCENTER_LOGGING_LEVEL": "WARNING",
        "CALLCENTER_INSTANCE_DATA_DIR": str(workdir),
        "CALLCENTER_WEB_WORKERS": str(args.workers),
        # cheap password hashing: 200 sign-ins are set-up, not what is measured
        "CALLCENTER_CONSOLE_PASSWORD_HASH_TIME_COST": "1",
        "CALLCENTER_CONSOLE_PASSWORD_HASH_MEMORY_KIB": "1024",
        "CALLCENTER_CONSOLE_PASSWORD_HASH_PARALLELISM": "1",
        "BENCH_DB_URL": url,
    }
    config = load_config(ROOT / "config.yaml", environ=env)
    web = config.settings.web
    print(
        f"{args.clients} SSE clients, {args.events} paced events at {args.rate:.0f}/s then "
        f"{args.bursts} bursts of {args.clients}; gunicorn gthread {args.workers} workers x "
        f"({web.threads} + {web.max_streams} stream) threads; {os.cpu_count()} CPUs; "
        f"{args.database}"
    )
    services = build(config)
    agents = [f"bench{n:03d}" for n in range(args.clients)]
    for agent_id in agents:
        services.routing.agent_sign_in(agent_id, levels={"general": 1})
        services.users.create(
            f"u_{agent_id}", f"Bench {agent_id}", "agent", PASSWORD, actor="bench",
            routing_agent_id=agent_id,
        )  # fmt: skip
    services.db.dispose()
    publisher_db = Database.from_url(url)
    publisher = for_database(publisher_db)

    def bus_publish(seq: int, client: int) -> None:
        publisher.publish(
            topics.agent(agents[client]), {"kind": "bench", "seq": seq, "sent": time.time()}
        )

    try:
        # -- the console, served like the README serves it
        cmd = [str(BIN / "callcenter"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        with server(cmd, env, port) as proc:
            cookies = [sign_in(port, f"u_{a}") for a in agents]
            before = tree_rss_kib(proc.pid)
            clients = Clients(port, ["/events"] * len(agents), cookies)
            time.sleep(2.0)
            per_stream = (tree_rss_kib(proc.pid) - before) / len(agents)
            result = publish_run(
                bus_publish,
                lambda: dict(clients.received),
                len(agents),
                args.events,
                args.rate,
                args.bursts,
            )
            peak = tree_rss_kib(proc.pid)
            clients.close()
        print(
            f"console: {len(agents)} streams open ({clients.refused} 503s retried), server "
            f"RSS {before / 1024:.0f} MiB before, {peak / 1024:.0f} MiB with the streams"
        )
        report("console", result, per_stream)

        # -- the baseline: a minimal SSE server on the same bus and gunicorn settings
        port2 = free_port()
        cmd = [
            str(BIN / "gunicorn"),
            "--chdir",
            str(ROOT / "bench"),
            "-b",
            f"127.0.0.1:{port2}",
            "-w",
            str(args.workers),
            "-k",
            "gthread",
            "--threads",
            str(web.threads + web.max_streams),
            "console_push:baseline_application",
        ]
        with server(cmd, {**env, "PYTHONPATH": str(ROOT)}, port2) as proc:
            for _ in range(4 * args.workers):  # every worker builds its bus before measuring
                warm = http.client.HTTPConnection("127.0.0.1", port2, timeout=10)
                warm.request("GET", "/")
                warm.getresponse().read()
                warm.close()
            before = tree_rss_kib(proc.pid)
            paths = [f"/events?topic={topics.agent(a)}" for a in agents]
            clients = Clients(port2, paths, [""] * len(agents))
            time.sleep(2.0)
            per_stream = (tree_rss_kib(proc.pid) - before) / len(agents)
            base = publish_run(
                bus_publish,
                lambda: dict(clients.received),
                len(agents),
                args.events,
                args.rate,
                args.bursts,
            )
            clients.close()
        report("minimal-sse", base, per_stream)

        # -- the floor: in-process fan-out, no network, no database
        bus = InProcessBus()
        got: dict[int, float] = {}
        lock = threading.Lock()
        stop = threading.Event()
        subs = [bus.subscribe([topics.agent(a)]) for a in agents]

        def reader(sub: Any) -> None:
            while not stop.is_set():
                ev = sub.get(0.2)
                if ev is not None and not ev.is_resync:
                    with lock:
                        got[int(ev.data["seq"])] = time.time() - float(ev.data["sent"])

        readers = [threading.Thread(target=reader, args=(s,), daemon=True) for s in subs]
        for t in readers:
            t.start()

        def local_publish(seq: int, client: int) -> None:
            bus.publish(
                topics.agent(agents[client]), {"kind": "bench", "seq": seq, "sent": time.time()}
            )

        floor = publish_run(
            local_publish, lambda: dict(got), len(agents), args.events, args.rate, args.bursts
        )
        stop.set()
        for sub in subs:
            sub.close()
        report("in-process", floor, None)
        p99 = percentiles(result["paced"] + result["burst"])[1]
        verdict = "met" if p99 <= 250 else "NOT met"
        print(f"console p99 over all events: {p99:.1f} ms (target <= 250 ms: {verdict})")
    finally:
        publisher.close()
        publisher_db.dispose()
        drop(admin_url, url)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
