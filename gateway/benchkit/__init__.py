"""Benchmark kit: a fast CSMS simulator, a load generator and process helpers for ``ocpp-gateway bench``.

Both peers speak just enough RFC 6455 over ``asyncio.Protocol`` to be a cheap
reference: no per-message futures, no frame objects, OCPP-J frames built from
byte templates. They are measuring instruments, not products: they trust the
peer (the gateway or each other) to be a correct WebSocket endpoint.
"""
