"""Fixtures of the cluster tests: a PostgreSQL schema of one test alone and a 2.0.1 CSMS."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_reason() -> str | None:
    """Why PostgreSQL cannot be used here (None: it answers)."""
    try:
        psycopg.connect(PG_URL, connect_timeout=2).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_URL} unreachable: {exc}"
    return None


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A schema of this test alone, dropped afterwards."""
    reason = postgres_reason()
    if reason:
        pytest.skip(reason)
    schema = f"test_cluster_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def csms() -> AsyncIterator[DemoCsms]:
    """A strict 2.0.1 CSMS that keeps every charger's calls."""
    server = await DemoCsms(versions=(Version.V201,)).start()
    yield server
    await server.stop()
