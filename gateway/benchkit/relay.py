"""A bare websockets relay: the reference the gateway's CPU per CALL is measured against.

    python -m gateway.benchkit.relay --csms ws://127.0.0.1:PORT/ocpp [--host 127.0.0.1] [--port 0]

For each charger WebSocket it opens one WebSocket to ``--csms`` + the charger's last path segment, with the
subprotocol the charger got, and copies messages both ways. Nothing else: no parsing, validation, log or metrics;
compression off. Prints ``{"port": N}`` once listening and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from gateway.benchkit.procs import raise_nofile

SUBPROTOCOLS = [Subprotocol(p) for p in ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")]


async def pump(source: Connection, sink: Connection) -> None:
    """Copy every message from ``source`` to ``sink`` until either side closes."""
    with contextlib.suppress(ConnectionClosed):
        async for message in source:
            await sink.send(message)


async def relay(charger: ServerConnection, csms_url: str) -> None:
    charger_id = charger.request.path.rsplit("/", 1)[-1] if charger.request else ""
    offer = [charger.subprotocol] if charger.subprotocol else None
    async with connect(f"{csms_url}/{charger_id}", subprotocols=offer, compression=None) as csms:
        both = [asyncio.create_task(pump(charger, csms)), asyncio.create_task(pump(csms, charger))]
        _, pending = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    await charger.close()


async def serve_relay(host: str, port: int, csms_url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The same accept backlog as the gateway and the CSMS simulator, so a storm measures the relay, not SYN drops.
    async with serve(lambda c: relay(c, csms_url.rstrip("/")), host, port, subprotocols=SUBPROTOCOLS,
                     compression=None, backlog=4096) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f'{{"port": {bound}}}', flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.benchkit.relay", description=__doc__.split("\n")[0])
    p.add_argument("--csms", required=True, help="the CSMS's WebSocket URL; the charger id is appended")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    raise_nofile()
    asyncio.run(serve_relay(args.host, args.port, args.csms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
