"""Message-log insert throughput on PostgreSQL with 1 and 2 writer processes, the per-charger query plan,
and the log's CPU cost per relayed CALL on SQLite and PostgreSQL.

    python -m gateway.benchkit.log_writers --url postgresql://postgres@127.0.0.1:5432/test --seconds 10
    python -m gateway.benchkit.log_writers --url ... --explain 100000
    python -m gateway.benchkit.log_writers --per-call [--url ...]
    python gateway/benchkit/log_writers.py --session [CALLS]   # also against an older checkout (PYTHONPATH)

``--per-call`` logs the four frames of pass-through CALLs (the charger's CALL in and out, the CSMS's
answer in and out, as the session emits them) through ``Store.record`` and the backend's batch insert,
and prints CPU µs per CALL: on the event loop (``record``), on the writer thread (the insert, which on
SQLite includes SQLite's own work) and, for PostgreSQL, in the server process serving the writer. It
compares four rows per CALL (every frame its own row, as before pairing) with two (each relayed frame
one row), and on PostgreSQL ``executemany`` with ``COPY``. ``--session`` adds the rest of the gateway's
sans-I/O work on the same CALLs (see ``session_per_call``).

Each writer is a separate process with its own ``PostgresStore`` (the
gateway's own batching writer thread, partitioned log) in one fresh schema, as
two gateway instances on one database are. A writer records frames as fast as
its writer thread keeps up (it yields while more than a batch is queued, so
nothing is dropped) and reports the rows written during the measured window,
after a warm-up. ``--explain N`` fills a schema with N rows of 100 chargers over five days
and prints ``EXPLAIN (ANALYZE)`` of the per-charger query the admin API and
``ocpp-gateway logs`` run. The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import subprocess
import sys
import time
import uuid
from typing import Any

from gateway.records import FrameRecord

DAY = 86400.0
CHARGERS = 1000
# A typical 1.6 MeterValues CALL: the log's common row is about this size.
FRAME = (
    '[2,"{uid}","MeterValues",{{"connectorId":1,"transactionId":4711,"meterValue":[{{"timestamp":'
    '"2026-11-30T06:00:00Z","sampledValue":[{{"value":"12345.6","measurand":"Energy.Active.Import.Register",'
    '"unit":"Wh"}},{{"value":"7200","measurand":"Power.Active.Import","unit":"W"}}]}}]}}]'
)


def record(i: int, ts: float, writer: int = 0, chargers: int = CHARGERS) -> FrameRecord:
    uid = f"{writer}-{i}"
    return FrameRecord(
        ts=ts, charger_id=f"BENCH{i % chargers:05d}", direction="in", peer="charger", ocpp_version="1.6",
        message_type="CALL", action="MeterValues", unique_id=uid, frame=FRAME.format(uid=uid), error_code=None,
        note=None,
    )


async def write_for(url: str, seconds: float, warmup: float, writer: int) -> dict[str, Any]:
    """Record as fast as the store writes for warm-up + ``seconds``; rows written in the measured window."""
    from gateway.store.postgres import PostgresStore

    store = PostgresStore(url, retention_days=None, batch_max=2000, flush_interval=0.05)
    await store.start()
    i = 0
    start = time.monotonic()
    measured_from: tuple[float, int] | None = None
    try:
        while True:
            now = time.monotonic()
            if measured_from is None and now - start >= warmup:
                measured_from = (now, store.stats["written"])
            if measured_from is not None and now - measured_from[0] >= seconds:
                break
            if store.stats["queue_depth"] > 4000:
                await asyncio.sleep(0.002)
                continue
            ts = time.time()
            for _ in range(500):
                store.record(record(i, ts, writer))
                i += 1
            await asyncio.sleep(0)
        assert measured_from is not None
        written = store.stats["written"] - measured_from[1]
        elapsed = time.monotonic() - measured_from[0]
        return {"writer": writer, "rows": written, "seconds": round(elapsed, 2), "dropped": store.stats["dropped"]}
    finally:
        await store.close()


def run_writers(url: str, writers: int, seconds: float, warmup: float) -> dict[str, Any]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway.benchkit.log_writers", "--url", url, "--child", str(w),
             "--seconds", str(seconds), "--warmup", str(warmup)],
            stdout=subprocess.PIPE, text=True,
        )
        for w in range(writers)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + warmup + 120)
        if proc.returncode != 0:
            raise SystemExit(f"writer exited with {proc.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    total = sum(r["rows"] / r["seconds"] for r in results)
    return {"writers": writers, "rows_per_s": round(total), "per_writer": results}


def explain(url: str, rows: int) -> str:
    """Fill five days with ``rows`` rows of 100 chargers, then the plan of one charger's newest 100 records."""
    import psycopg

    from gateway.store.postgres import PostgresStore, split_url

    async def fill() -> None:
        now = time.time()
        for days_back in (4.0, 1.0):  # each start creates its day and the two after it, as the writer did then
            store = PostgresStore(url, retention_days=None, batch_max=5000)
            store.message_log.clock = functools.partial(float.__sub__, now, days_back * DAY)
            await store.start()
            if days_back == 1.0:
                for i in range(rows):
                    store.record(record(i, now - 4.5 * DAY + 4.5 * DAY * i / rows, chargers=100))
                    if i % 20_000 == 0:
                        await store.flush()
            await store.close()

    asyncio.run(fill())
    conninfo, schema = split_url(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{schema}".message_log')
        plan = conn.execute(
            f'EXPLAIN (ANALYZE, COSTS OFF, TIMING ON) SELECT * FROM "{schema}".message_log'
            " WHERE charger_id = %s ORDER BY id DESC LIMIT 100", ("BENCH00042",)
        ).fetchall()
        parts = conn.execute(
            f'SELECT tableoid::regclass::text, count(*) FROM "{schema}".message_log GROUP BY 1 ORDER BY 1'
        ).fetchall()
    lines = [f"-- rows per partition: {', '.join(f'{t.split(chr(46))[-1]}={n}' for t, n in parts)}"]
    return "\n".join(lines + [str(r[0]) for r in plan])


def call_frames(i: int, ts: float) -> list[FrameRecord]:
    """The four records of one relayed MeterValues CALL, the same text objects in and out as the session logs."""
    uid = f"c-{i}"
    call = FRAME.format(uid=uid)
    answer = f'[3,"{uid}",{{}}]'
    cid = f"BENCH{i % CHARGERS:05d}"
    return [
        FrameRecord(ts, cid, "in", "charger", "1.6", "CALL", "MeterValues", uid, call),
        FrameRecord(ts, cid, "out", "csms", "1.6", "CALL", "MeterValues", uid, call),
        FrameRecord(ts, cid, "in", "csms", "1.6", "CALLRESULT", "MeterValues", uid, answer),
        FrameRecord(ts, cid, "out", "charger", "1.6", "CALLRESULT", "MeterValues", uid, answer),
    ]


def _server_cpu(conn: Any) -> float:
    """CPU seconds of the PostgreSQL backend process serving ``conn`` (the server runs on this host)."""
    import os

    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_call(url: str, calls: int, paired: bool, insert: str = "") -> dict[str, Any]:
    """CPU µs per CALL of logging ``calls`` relayed CALLs in batches of 2,000 rows (see ``--per-call``)."""
    from gateway.store import open_store

    store = open_store(url, retention_days=None, batch_max=2000)
    conn = store._connect_writer()
    store._create_schema(conn)
    ts = time.time()
    records = [r for i in range(calls) for r in call_frames(i, ts)]
    if not paired:  # every frame its own row: what the store wrote before it paired relayed frames
        queued = list(records)
        record_s = math.nan  # not measured: this is the writer's side of the comparison
    else:
        t0 = time.thread_time()
        for r in records:
            store.record(r)
        record_s = time.thread_time() - t0
        queued = list(store._records)
        store._records.clear()
    pg = insert != ""
    server0 = _server_cpu(conn) if pg else 0.0
    t0 = time.thread_time()
    for start in range(0, len(queued), 2000):
        rows: list[tuple[Any, ...]] = list(queued[start:start + 2000])
        if insert == "executemany":
            with conn.cursor() as cur:
                cur.executemany(store._insert, rows)  # type: ignore[attr-defined]
            conn.commit()
        else:
            store._insert_messages(conn, rows)
    writer_s = time.thread_time() - t0
    server_s = _server_cpu(conn) - server0 if pg else 0.0
    store._close_connection(conn)
    per = 1e6 / calls
    return {"store": url.split(":", 1)[0], "rows_per_call": round(len(queued) / calls, 2),
            "insert": insert or "values", "record_us": None if math.isnan(record_s) else round(record_s * per, 2),
            "writer_us": round(writer_s * per, 2), "server_us": round(server_s * per, 2)}


def per_call_table(pg_url: str | None, calls: int) -> list[dict[str, Any]]:
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for paired in (False, True):
            results.append(per_call(f"sqlite:///{tmp}/log-{paired}.db", calls, paired))
    if pg_url is not None:
        for paired, insert in ((False, "executemany"), (False, "copy"), (True, "executemany"), (True, "copy")):
            results.append(per_call(pg_url, calls, paired, insert))
    return results


SESSION_CALLS = (  # the bench's saturation mix, in turn: (action, 1.6 payload)
    ("Heartbeat", "{}"),
    ("MeterValues", '{"connectorId":1,"meterValue":[{"timestamp":"2026-11-30T06:00:00Z","sampledValue":'
                    '[{"value":"12345.6","measurand":"Energy.Active.Import.Register","unit":"Wh"}]}]}'),
    ("StatusNotification", '{"connectorId":1,"errorCode":"NoError","status":"Available"}'),
)
SESSION_ANSWERS = {"Heartbeat": '{"currentTime":"2026-11-30T06:00:00Z"}'}


def session_per_call(calls: int, csms: str) -> dict[str, Any]:
    """CPU per CALL of the gateway's own work on relayed CALLs, without sockets: ``ChargerSession`` (parse,
    validate, translate) as ``ChargerConnection`` drives it, and the message log (``record`` on the loop
    thread, inserts on the writer thread, SQLite file). Runs against whichever ``gateway`` is importable."""
    import inspect
    import re
    import tempfile

    from adapters.base import Context, Side
    from adapters.registry import translator_for
    from gateway import ocppj
    from gateway.session import ChargerSession, Send
    from gateway.store import open_store

    charger_v, csms_v = ocppj.Version.V16, ocppj.Version.parse(csms)
    translator = translator_for(charger_v, csms_v)
    assert translator is not None
    ids = iter(range(10**9))
    ctx = Context("BENCH1", charger_v, csms_v, new_uuid=lambda: f"gw-{next(ids)}")
    session = ChargerSession("BENCH1", translator, ctx)
    session.link_up(Side.CSMS, 0.0)
    watched = re.compile(r'"(BootNotification|StatusNotification|StartTransaction|StopTransaction|TransactionEvent)"')
    parsed_once = "parsed" in inspect.signature(session.receive).parameters

    async def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(f"sqlite:///{tmp}/gateway.db", retention_days=None)
            await store.start()
            record = store.record
            t0, p0 = time.thread_time(), time.process_time()
            for i in range(calls):
                action, payload = SESSION_CALLS[i % len(SESSION_CALLS)]
                text = f'[2,"c{i}","{action}",{payload}]'
                now = time.time()
                if watched.search(text) is not None:  # ChargerConnection parses these to route them
                    frame = ocppj.parse(text, charger_v)
                    actions = session.receive(Side.CHARGER, text, now, frame) if parsed_once else \
                        session.receive(Side.CHARGER, text, now)
                else:
                    actions = session.receive(Side.CHARGER, text, now)
                while actions:
                    later = []
                    for a in actions:
                        if isinstance(a, FrameRecord):
                            record(a)
                        elif isinstance(a, Send) and a.to is Side.CSMS:
                            uid = orjson_loads(a.text)[1]
                            answer = SESSION_ANSWERS.get(action, "{}")  # the same in 1.6 and 2.0.1
                            later += session.receive(Side.CSMS, f'[3,"{uid}",{answer}]', now)
                    actions = later
                if i % 500 == 0:
                    await asyncio.sleep(0)  # let the writer take its batches as the loop would
            loop_s = time.thread_time() - t0
            await store.close()
            total_s = time.process_time() - p0
            stats = store.stats
        per = 1e6 / calls
        return {"csms": csms, "frames_logged": stats["written"], "rows": stats.get("rows_written", stats["written"]),
                "loop_us": round(loop_s * per, 1), "writer_us": round((total_s - loop_s) * per, 1),
                "total_us": round(total_s * per, 1)}

    return asyncio.run(run())


def orjson_loads(text: str) -> Any:
    import orjson

    return orjson.loads(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--explain", type=int, default=0, metavar="ROWS")
    ap.add_argument("--per-call", type=int, nargs="?", const=50_000, default=0, metavar="CALLS",
                    help="CPU per relayed CALL of the log, SQLite and PostgreSQL (default 50,000 CALLs)")
    ap.add_argument("--session", type=int, nargs="?", const=30_000, default=0, metavar="CALLS",
                    help="CPU per relayed CALL of the session and the log together, no sockets (default 30,000)")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.session:
        for csms in ("1.6", "2.0.1", "2.1"):
            print(json.dumps(session_per_call(args.session, csms)), flush=True)
        return
    if args.child is not None:
        print(json.dumps(asyncio.run(write_for(args.url, args.seconds, args.warmup, args.child))))
        return
    import psycopg

    from gateway.store.postgres import split_url

    conninfo, _ = split_url(args.url)
    schema = f"bench_log_{uuid.uuid4().hex[:10]}"
    url = f"{args.url}{'&' if '?' in args.url else '?'}schema={schema}"
    try:
        if args.explain:
            print(explain(url, args.explain))
            return
        if args.per_call:
            for row in per_call_table(url, args.per_call):
                print(json.dumps(row), flush=True)
            return
        for writers in (1, 2):
            print(json.dumps(run_writers(url, writers, args.seconds, args.warmup)), flush=True)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
