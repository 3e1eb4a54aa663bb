"""``workers: N``: N gateway processes on one host share the charger port behind one admin address.

With N > 1, ``ocpp-gateway run`` is a small supervisor (docs/cluster.md, "Workers"):

- It starts N worker processes (``ocpp-gateway run --worker I:FD:PORT``, an option hidden from --help). Each
  is a whole gateway and a cluster instance exactly like one behind HAProxy (gateway/cluster.py): its own
  instance id, one owner per charger by advisory lock, ids from the database. Every worker listens on the
  charger port with SO_REUSEPORT and the kernel spreads new connections over them.
- Worker 0 starts alone (it creates or migrates the store's tables), the others once it is ready.
- A worker serves its admin API on 127.0.0.1, an ephemeral port, and reports that port and its instance id
  on a pipe. The supervisor serves the configured admin address: /metrics merges the workers' expositions
  with a ``worker`` label, /healthz is 200 when every worker is, a charger's /api/chargers/{id}... goes to
  the worker holding the charger, lists are merged, anything else goes to any worker.
- SIGTERM/SIGINT stop every worker as a single gateway stops (chargers get 1001). A worker that dies is
  started again with backoff; its chargers reconnect to the other workers meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from gateway.config import GatewayConfig
from gateway.logs import get_logger

if TYPE_CHECKING:
    from gateway.app import Gateway

RESTART_FIRST = 1.0  # seconds before a dead worker is started again; doubles while it keeps dying
RESTART_MAX = 30.0
STEADY = 60.0  # a worker that ran this long counts as healthy: its next restart waits RESTART_FIRST again
STOP_GRACE = 60.0  # seconds a worker may take to close its chargers and flush the log before SIGKILL
ASK_TIMEOUT = 30.0
# Gauges each worker computes over the whole estate (config, store): exported once, not once per worker.
ESTATE_WIDE = frozenset({"ocpp_gateway_migration_phase_chargers", "ocpp_gateway_migration_chargers"})
# A migration plan's gauges: every worker publishes its copy of each plan, the one running it the newest.
PER_PLAN = frozenset({"ocpp_gateway_migration_plan_chargers", "ocpp_gateway_migration_plan_waves",
                      "ocpp_gateway_migration_plan_status"})
_PLAN_LABEL = re.compile(r'[{,]plan="((?:[^"\\]|\\.)*)"')
_PLANS_PATH = re.compile(r"^/api/migration/plans(?:/([^/]+))?$")
_NOT_FORWARDED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
                            "date", "server", "host"})
_CHARGER_PATH = re.compile(r"^/api/chargers/([^/]+)(?:/.*)?$")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """What a worker is told on its command line: its index, the pipe to report on, the charger port."""

    index: int
    report_fd: int
    port: int

    @classmethod
    def parse(cls, text: str) -> WorkerSlot:
        index, report_fd, port = (int(part) for part in text.split(":"))
        return cls(index, report_fd, port)

    def __str__(self) -> str:
        return f"{self.index}:{self.report_fd}:{self.port}"


# ------------------------------------------------------------------ signals (the worker's, the supervisor's)


def on_stop_signal(callback: Callable[[], object]) -> None:
    """Call ``callback`` on the running loop at SIGTERM or SIGINT.

    Not ``loop.add_signal_handler``: that learns of a signal from a byte written into the loop's self-pipe,
    the pipe every ``call_soon_threadsafe`` also writes to. After thousands of chargers drop at once, the
    store's thread fills it, the signal's byte is refused ("Exception ignored when trying to write to the
    signal wakeup fd: BlockingIOError") and the SIGTERM is lost (measured: 8,000 chargers released, then
    SIGTERM: no stop in 60 s). A plain handler runs in the main thread whatever the pipe holds."""
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: object) -> None:
        if not loop.is_closed():  # a late signal while the process exits: nothing left to stop
            loop.call_soon_threadsafe(callback)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


# ------------------------------------------------------------------ the worker's side


def worker_config(config: GatewayConfig, slot: WorkerSlot) -> GatewayConfig:
    """A worker's configuration: the host's charger port, a private admin port, its own instance id."""
    instance = f"{config.instance_id}-w{slot.index}" if config.instance_id else None  # None: hostname:pid
    return config.model_copy(update={
        "workers": 1,
        "listen": config.listen.model_copy(update={"port": slot.port}),
        "admin": config.admin.model_copy(update={"host": "127.0.0.1", "port": 0}),
        "instance_id": instance,
    })


def die_with_supervisor() -> None:
    """Die with the supervisor: ``kill -9`` of the gateway's pid (or the OOM killer) ends the whole gateway, as
    it does with one process, rather than leaving workers nobody supervises or stops."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor still stops its workers itself
        return
    if os.getppid() == 1:  # the supervisor died before prctl
        os.kill(os.getpid(), signal.SIGKILL)


def report_ready(slot: WorkerSlot, gw: Gateway) -> None:
    """Tell the supervisor this worker serves: its pid, admin port and instance id, one JSON line."""
    line = json.dumps({"index": slot.index, "pid": os.getpid(), "admin_port": gw.admin_port,
                       "instance": gw.cluster.instance_id}) + "\n"
    try:
        os.write(slot.report_fd, line.encode())
    finally:
        os.close(slot.report_fd)


# ------------------------------------------------------------------ /metrics


def merge_expositions(parts: list[tuple[str, str]], plan_source: dict[str, str] | None = None) -> str:
    """One Prometheus text exposition from the workers' (``(worker, text)``): every sample gets a ``worker``
    label and each family's HELP/TYPE appear once with all its samples, except the estate's views:
    ``ESTATE_WIDE`` families come from one worker, and each plan's ``PER_PLAN`` series from the worker
    ``plan_source`` names for it (the one whose copy of the plan is newest), both without the label."""
    headers: dict[str, dict[str, str]] = {}
    samples: dict[str, list[str]] = {}
    sources: dict[str, str] = {}  # family (or family + plan) -> the worker it is taken from
    for worker, text in parts:
        family: str | None = None
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                words = line.split(" ", 3)
                if len(words) >= 3 and words[1] in ("HELP", "TYPE"):
                    family = words[2]
                    headers.setdefault(family, {}).setdefault(words[1], line)
                    samples.setdefault(family, [])
                continue
            if family is None:  # a sample without a header: its own family
                family = re.split(r"[{ ]", line, maxsplit=1)[0]
                samples.setdefault(family, [])
            if family in ESTATE_WIDE or family in PER_PLAN:
                plan = _PLAN_LABEL.search(line) if family in PER_PLAN else None
                key = f"{family}\x00{plan.group(1)}" if plan is not None else family
                wanted = (plan_source or {}).get(plan.group(1)) if plan is not None else None
                if sources.setdefault(key, wanted or worker) == worker:
                    samples[family].append(line)
            else:
                samples[family].append(with_label(line, "worker", worker))
    out: list[str] = []
    for family, lines in samples.items():
        kinds = headers.get(family, {})
        out += [kinds[k] for k in ("HELP", "TYPE") if k in kinds]
        out += lines
    return "\n".join(out) + "\n"


def label_value(text: str) -> str:
    """``text`` escaped as a Prometheus label value."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def with_label(sample: str, name: str, value: str) -> str:
    """A Prometheus sample line with one more label (first, so it never lands in a label value)."""
    brace, space = sample.find("{"), sample.find(" ")
    label = f'{name}="{value}"'
    if brace != -1 and (space == -1 or brace < space):
        rest = sample[brace + 1:]
        return f"{sample[:brace + 1]}{label}{'' if rest.startswith('}') else ','}{rest}"
    return f"{sample[:space]}{{{label}}}{sample[space:]}"


# ------------------------------------------------------------------ the supervisor


async def terminate(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps the process."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class WorkerFailed(Exception):
    """A worker exited before it was ready."""

    def __init__(self, index: int, status: int) -> None:
        super().__init__(f"worker {index} exited with status {status} before it was ready")
        self.index = index
        self.status = status


@dataclass
class Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    admin_port: int | None = None
    instance: str | None = None
    started: float = 0.0
    restarts: int = 0

    @property
    def ready(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and self.admin_port is not None

    def view(self) -> dict[str, Any]:
        state = "ready" if self.ready else "starting" if self.proc and self.proc.returncode is None else "down"
        return {"worker": self.index, "pid": self.proc.pid if self.proc else None, "instance": self.instance,
                "state": state, "restarts": self.restarts}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body, headers=self.headers)


def _read_report(fd: int) -> bytes:
    """The worker's ready line, or b"" when it exited first (its end of the pipe closed). Blocking."""
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = os.read(fd, 4096)
            if not chunk:
                return b""
            data += chunk
        return data
    finally:
        os.close(fd)


class Supervisor:
    """Runs ``count`` workers of the configuration at ``path`` and serves the host's admin address."""

    def __init__(self, path: str, config: GatewayConfig, count: int) -> None:
        self.path = path
        self.config = config
        self.workers = [Worker(i) for i in range(count)]
        self.log = get_logger(role="supervisor")
        self.stopping = asyncio.Event()
        self._hold: socket.socket | None = None
        self._front: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._turn = 0
        self._keepers: list[asyncio.Task[None]] = []

    async def run(self) -> int:
        """Until SIGTERM/SIGINT: 0 after a clean stop, 1 or 2 (as ``run`` exits) when the workers cannot start."""
        on_stop_signal(self.stopping.set)
        listen, admin = self.config.listen, self.config.admin
        try:
            port = self._hold_port()
        except OSError as exc:
            print(f"ocpp-gateway: cannot start: listen {listen.host}:{listen.port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT), auto_decompress=False)
        try:
            try:
                await self._start_front()
            except OSError as exc:
                print(f"ocpp-gateway: cannot start: admin {admin.host}:{admin.port}: {exc.strerror or exc}",
                      file=sys.stderr)
                return 1
            try:
                if not await self._start_all(port):
                    return 0  # stopped while starting
            except WorkerFailed as exc:
                if exc.status != 2:  # 2: the worker printed what is wrong, one line per problem, as `run` does
                    print(f"ocpp-gateway: cannot start: {exc} (one of {len(self.workers)} workers; its log above "
                          "says why)", file=sys.stderr)
                return exc.status if exc.status in (1, 2) else 1
            self.log.info("workers_started", workers=len(self.workers), listen=f"{listen.host}:{port}",
                          admin=f"{admin.host}:{self.admin_port}",
                          instances=[w.instance for w in self.workers])
            self._keepers = [asyncio.create_task(self._keep(w, port)) for w in self.workers]
            await self.stopping.wait()
            return 0
        finally:
            await self._stop_all()
            if self._front is not None:
                await self._front.cleanup()
            await self._http.close()
            if self._hold is not None:
                self._hold.close()

    @property
    def admin_port(self) -> int:
        assert self._front is not None
        addresses = self._front.addresses
        return int(addresses[0][1])

    def _hold_port(self) -> int:
        """Bind (not listen on) the charger port with SO_REUSEPORT: the port is checked and resolved before any
        worker starts, and stays this host's while a worker restarts. A socket that does not listen gets no
        connections, so the kernel spreads them over the workers only."""
        listen = self.config.listen
        family, kind, proto, _, address = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # as asyncio's listening sockets are, so the kernel groups them
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        self._hold = sock
        return int(sock.getsockname()[1])

    async def _start_all(self, port: int) -> bool:
        first, *rest = self.workers
        if not await self._start(first, port):  # alone: it creates or migrates the store's tables
            return False
        started = await asyncio.gather(*(self._start(w, port) for w in rest), return_exceptions=True)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        return all(started)

    async def _start(self, worker: Worker, port: int) -> bool:
        """Start a worker and wait until it serves (True) or the supervisor is told to stop (False)."""
        read_fd, write_fd = os.pipe()
        slot = WorkerSlot(worker.index, write_fd, port)
        worker.admin_port = None
        try:
            # Its own process group: a Ctrl-C on the terminal reaches the supervisor, which stops the workers.
            worker.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "run", "--config", self.path, "--worker", str(slot),
                pass_fds=(write_fd,), process_group=0)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        worker.started = time.monotonic()
        report = asyncio.ensure_future(asyncio.to_thread(_read_report, read_fd))
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({report, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not report.done():
            return False  # stopping: _stop_all ends the worker, and with it the read
        line = report.result()
        if not line:
            raise WorkerFailed(worker.index, await worker.proc.wait())
        ready = json.loads(line)
        worker.admin_port, worker.instance = int(ready["admin_port"]), str(ready["instance"])
        return True

    async def _keep(self, worker: Worker, port: int) -> None:
        """Start the worker again whenever it dies, waiting longer each time it dies again soon."""
        delay = RESTART_FIRST
        while worker.proc is not None:
            status = await worker.proc.wait()
            if self.stopping.is_set():
                return
            ran = time.monotonic() - worker.started
            if ran >= STEADY:
                delay = RESTART_FIRST
            worker.admin_port = None
            self.log.error("worker_exited", worker=worker.index, pid=worker.proc.pid, status=_status(status),
                           ran_seconds=round(ran, 1), restart_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return
            delay = min(delay * 2, RESTART_MAX)
            worker.restarts += 1
            try:
                if not await self._start(worker, port):
                    return
            except WorkerFailed:
                continue  # its proc has exited: the loop logs it and waits longer
            except OSError as exc:  # cannot even fork: try again later
                self.log.error("worker_not_started", worker=worker.index, error=str(exc))
                continue
            self.log.info("worker_restarted", worker=worker.index, pid=worker.proc.pid, instance=worker.instance,
                          restarts=worker.restarts)

    async def _stop_all(self) -> None:
        """SIGTERM every worker (each closes its chargers and flushes its log), SIGKILL after STOP_GRACE."""
        self.stopping.set()
        for task in self._keepers:
            task.cancel()
        live = [w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None]
        await asyncio.gather(*(terminate(p, STOP_GRACE) for p in live))
        if live:
            self.log.info("workers_stopped", workers=len(live))

    # ------------------------------------------------------------ the host's admin address

    async def _start_front(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/api/chargers", self._chargers)
        app.router.add_get("/api/migration", self._migration)
        app.router.add_get("/api/migration/plans", self._plans)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._front = web.AppRunner(app, access_log=None)
        await self._front.setup()
        site = web.TCPSite(self._front, self.config.admin.host, self.config.admin.port)
        try:
            await site.start()
        except OSError:
            await self._front.cleanup()
            self._front = None
            raise

    def _ready(self) -> list[Worker]:
        """Ready workers, starting with the next in turn (requests are spread over them)."""
        ready = [w for w in self.workers if w.ready]
        if not ready:
            return []
        self._turn = (self._turn + 1) % len(ready)
        return ready[self._turn:] + ready[:self._turn]

    async def _ask(self, worker: Worker, method: str, path: str, headers: dict[str, str] | None = None,
                   body: bytes | None = None) -> Answer:
        assert self._http is not None
        url = f"http://127.0.0.1:{worker.admin_port}{path}"
        async with self._http.request(method, url, headers=headers, data=body, allow_redirects=False) as resp:
            kept = {k: v for k, v in resp.headers.items() if k.lower() not in _NOT_FORWARDED}
            return Answer(resp.status, kept, await resp.read())

    async def _ask_all(self, path: str, headers: dict[str, str] | None = None) -> list[tuple[Worker, Answer]]:
        """``path`` from every ready worker that answers, in worker order."""
        ready = sorted(self._ready(), key=lambda w: w.index)
        answers = await asyncio.gather(*(self._ask(w, "GET", path, headers) for w in ready), return_exceptions=True)
        return [(w, a) for w, a in zip(ready, answers, strict=True) if isinstance(a, Answer)]

    async def _metrics(self, request: web.Request) -> web.Response:
        answered = [(w, a) for w, a in await self._ask_all("/metrics") if a.status == 200]
        newest = await self._plan_copies(self._own_token())
        text = merge_expositions([(str(w.index), a.body.decode("utf-8", "replace")) for w, a in answered],
                                 {label_value(name): str(w.index) for name, (w, _) in newest.items()})
        up = {w.index for w, _ in answered}
        own = ["# HELP ocpp_gateway_workers Worker processes configured on this host (workers:).",
               "# TYPE ocpp_gateway_workers gauge", f"ocpp_gateway_workers {len(self.workers)}",
               "# HELP ocpp_gateway_worker_up Whether the worker answered this scrape.",
               "# TYPE ocpp_gateway_worker_up gauge",
               *(f'ocpp_gateway_worker_up{{worker="{w.index}"}} {int(w.index in up)}' for w in self.workers),
               "# HELP ocpp_gateway_worker_restarts_total Times the supervisor started the worker again after it "
               "died.", "# TYPE ocpp_gateway_worker_restarts_total counter",
               *(f'ocpp_gateway_worker_restarts_total{{worker="{w.index}"}} {w.restarts}' for w in self.workers)]
        return web.Response(text=text + "\n".join(own) + "\n", content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def _healthz(self, request: web.Request) -> web.Response:
        """200 when every worker serves and says so; the workers' own answers, summed where they count."""
        answers = {w.index: a for w, a in await self._ask_all("/healthz") if a.status == 200}
        views = []
        for worker in self.workers:
            view = worker.view()
            body = answers[worker.index].json() if worker.index in answers else None
            if body is not None:
                view.update(status=body.get("status"), chargers_connected=body.get("chargers_connected", 0),
                            store=body.get("store"),
                            sessions_waiting_for_store=body.get("sessions_waiting_for_store", 0))
            views.append(view)
        healthy = len(answers) == len(self.workers)
        stores = {v.get("store") for v in views}
        return web.json_response({
            "status": "ok" if healthy else "unhealthy",
            "chargers_connected": sum(int(v.get("chargers_connected", 0)) for v in views),
            "instance": socket.gethostname(), "store": "ok" if stores == {"ok"} else "unreachable",
            "sessions_waiting_for_store": sum(int(v.get("sessions_waiting_for_store", 0)) for v in views),
            "workers": views,
        }, status=200 if healthy else 503)

    async def _chargers(self, request: web.Request) -> web.StreamResponse:
        """Every worker's list, each charger as the worker holding it describes it (others know less of it)."""
        answered = await self._ask_all(request.path_qs, _forwarded(request))
        refused = _refusal(answered)
        if refused is not None:
            return refused
        by_instance = {w.instance: i for i, (w, _) in enumerate(answered)}
        merged: dict[str, tuple[int, dict[str, Any]]] = {}
        for rank, (_, answer) in enumerate(answered):
            for item in answer.json():
                holder = by_instance.get(item.get("instance")) if item.get("connected") else None
                score = 0 if holder == rank else 1
                if item["id"] not in merged or score < merged[item["id"]][0]:
                    merged[item["id"]] = (score, item)
        return web.json_response([merged[cid][1] for cid in sorted(merged)])

    async def _migration(self, request: web.Request) -> web.StreamResponse:
        """The estate's migration view from every worker, each charger's row from the worker that serves it."""
        from gateway.report import migration_view

        answered = await self._ask_all(request.path_qs, _forwarded(request))
        refused = _refusal(answered)
        if refused is not None:
            return refused
        rows: dict[str, dict[str, Any]] = {}
        for _, answer in answered:
            for row in answer.json()["chargers"]:
                if row["id"] not in rows or (row.get("connected") and not rows[row["id"]].get("connected")):
                    rows[row["id"]] = row
        return web.json_response(migration_view([rows[cid] for cid in sorted(rows)],
                                                self.config.migration.ready_after))

    async def _plans(self, request: web.Request) -> web.StreamResponse:
        """Every plan as the worker with its newest copy (the one running it) sees it."""
        answered = await self._ask_all(request.path_qs, _forwarded(request))
        refused = _refusal(answered)
        if refused is not None:
            return refused
        newest = _newest_plans(answered)
        return web.json_response([summary for _, summary in sorted(
            newest.values(), key=lambda copy: float(copy[1].get("created_at") or 0), reverse=True)])

    async def _plan_copies(self, headers: dict[str, str]) -> dict[str, tuple[Worker, dict[str, Any]]]:
        return _newest_plans([(w, a) for w, a in await self._ask_all("/api/migration/plans", headers)
                              if a.status == 200])

    def _own_token(self) -> dict[str, str]:
        """The admin token's header, for what the supervisor asks of the workers on its own (/metrics)."""
        name = self.config.admin.token_env
        token = os.environ.get(name) if name else None
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        """To the worker holding the charger the path names (or with the newest copy of the plan it names),
        else to any worker (the next that answers)."""
        headers = _forwarded(request)
        body = await request.read() if request.can_read_body else None
        candidates = self._ready()
        charger = _CHARGER_PATH.match(request.rel_url.raw_path)
        plan = _PLANS_PATH.match(request.path) if request.method == "GET" else None
        best: Worker | None = None
        if charger is not None:
            best = await self._holder(charger.group(1), headers)
        elif plan is not None and plan.group(1):
            best = (await self._plan_copies(headers)).get(plan.group(1), (None, {}))[0]
        if best is not None:
            candidates = [best, *(w for w in candidates if w is not best)]
        for worker in candidates:
            try:
                answer = await self._ask(worker, request.method, request.rel_url.raw_path_qs, headers, body)
            except aiohttp.ClientConnectorError:  # nothing was sent: it died or is restarting; ask the next
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                return web.json_response({"error": f"worker {worker.index} did not answer: {exc!r}"}, status=502)
            return answer.response()
        return _no_worker()

    async def _holder(self, raw_id: str, headers: dict[str, str]) -> Worker | None:
        """The worker holding the charger (from any worker's view of it), None when none does."""
        for worker in self._ready():
            try:
                answer = await self._ask(worker, "GET", f"/api/chargers/{raw_id}", headers)
            except (aiohttp.ClientError, TimeoutError):
                continue
            if answer.status != 200:
                return None
            item = answer.json()
            if not item.get("connected"):
                return None
            return next((w for w in self.workers if w.ready and w.instance == item.get("instance")), None)
        return None


def _forwarded(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}


def _newest_plans(answered: list[tuple[Worker, Answer]]) -> dict[str, tuple[Worker, dict[str, Any]]]:
    """Per plan name, the worker whose copy was updated last and that copy (a standby's may be behind)."""
    newest: dict[str, tuple[Worker, dict[str, Any]]] = {}
    for worker, answer in answered:
        for summary in answer.json():
            held = newest.get(summary["name"])
            if held is None or float(summary.get("updated_at") or 0) > float(held[1].get("updated_at") or 0):
                newest[summary["name"]] = (worker, summary)
    return newest


def _refusal(answered: list[tuple[Worker, Answer]]) -> web.Response | None:
    """What to answer instead of a merge: no worker answered, or one refused (401 without the token ...)."""
    if not answered:
        return _no_worker()
    refused = next((a for _, a in answered if a.status != 200), None)
    return refused.response() if refused is not None else None


def _no_worker() -> web.Response:
    return web.json_response({"error": "no worker is ready; see /healthz"}, status=503)


def _status(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-returncode).name
    return str(returncode)


def supervise(path: str, config: GatewayConfig, count: int) -> int:
    """``ocpp-gateway run`` with ``count`` > 1 workers: the supervisor's exit status."""
    return asyncio.run(Supervisor(path, config, count).run())
