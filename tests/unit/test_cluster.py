"""The cluster layer alone: claims per charger, lock keys, which engine a store URL gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cluster import ClusterError, LocalCluster, PostgresCluster, lock_key, open_cluster


@pytest.mark.parametrize(("url", "engine"), [
    ("postgresql://postgres@127.0.0.1:5432/test?schema=s1", PostgresCluster),
    ("postgres://u:p@db/gw", PostgresCluster),
    ("sqlite:///gateway.db", LocalCluster),
    ("sqlite://:memory:", LocalCluster),
])
def test_the_store_url_decides_the_engine(url: str, engine: type) -> None:
    """PostgreSQL shares chargers between instances; SQLite is one process."""
    assert type(open_cluster(url, "gw1")) is engine


def test_an_unnamed_instance_is_called_after_its_host_and_process() -> None:
    """The default instance id says where to look: hostname:pid."""
    import os

    assert open_cluster("sqlite://:memory:", None).instance_id.endswith(f":{os.getpid()}")


def test_lock_keys_are_stable_63_bit_and_namespaced() -> None:
    """Same charger and schema: same key; another schema or charger: another key; never negative."""
    keys = {lock_key(ns, cid) for ns in ("a", "b") for cid in ("CP1", "CP2")}
    assert len(keys) == 4
    assert lock_key("a", "CP1") == lock_key("a", "CP1")
    assert all(0 <= k < 2**63 for k in keys)


async def test_a_charger_is_let_go_only_when_its_last_claim_is_given_back() -> None:
    """A reconnect claims before the old socket lets go; the charger stays held until both are done."""
    cluster = LocalCluster("gw1")
    assert await cluster.acquire("CP1", lambda: False)
    assert await cluster.acquire("CP1", lambda: False)
    await cluster.release("CP1")
    assert cluster.holds("CP1")
    assert set(cluster.holders()) == {"CP1"} and cluster.holders()["CP1"].instance == "gw1"
    await cluster.release("CP1")
    assert not cluster.holds("CP1") and cluster.holders() == {}


async def test_a_single_instance_does_not_wait_for_the_store_to_let_a_charger_go() -> None:
    """Alone, nobody else reads the state: releasing skips the flush."""
    cluster = LocalCluster("gw1")
    settled: list[str] = []

    async def settle() -> None:
        settled.append("flushed")

    await cluster.acquire("CP1", lambda: False)
    await cluster.release("CP1", settle)
    assert settled == []


async def test_a_second_process_on_one_sqlite_file_is_refused_with_the_way_out(tmp_path: Path) -> None:
    """The file lock names the holder and says that several instances need PostgreSQL."""
    first = LocalCluster("gw1", str(tmp_path / "g.db"))
    await first.start()
    second = LocalCluster("gw2", str(tmp_path / "g.db"))
    with pytest.raises(ClusterError, match=r"\(gw1\) already uses the SQLite store .* need a PostgreSQL store"):
        await second.start()
    await first.stop()
    await second.start()
    await second.stop()
