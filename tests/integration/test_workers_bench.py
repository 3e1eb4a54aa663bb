"""`python -m gateway.benchkit.workers --quick`: every stage yields its figures (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")),
                                reason="needs PostgreSQL's server binaries (apt-get install postgresql): the "
                                "benchmark starts a server of its own")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_workers_benchmark_produces_every_figure() -> None:
    """1 vs 2 workers at saturation, chargers held with 1 and 2 workers, the idle stage spread over workers,
    load generators and CSMS processes: every charger held, each worker got some, the table shows them."""
    done = subprocess.run([sys.executable, "-m", "gateway.benchkit.workers", "--quick"], capture_output=True,
                          text=True, timeout=580, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary_text = done.stdout[done.stdout.index('{\n  "summary"'):done.stdout.index("| stage |")]
    results = json.loads(summary_text)["summary"]

    saturation = results["saturation"]
    for key in ("1_sqlite", "1", "2"):
        assert saturation[key]["calls_per_s"] > 0 and saturation[key]["errors"] == 0
    assert set(saturation["2"]["charger_calls_by_worker"]) == {"0", "1"}
    assert saturation["ratio_2_to_1"] > 0

    for stage in (*results["held"].values(), results["idle"]):
        assert stage["held"] == stage["requested"] and stage["failed"] == 0
        assert len(stage["connected_by_worker"]) == stage["workers"]
        assert all(count > 0 for count in stage["connected_by_worker"].values())
        assert stage["max_fds_of_a_process"] < results["fd_limit"]
    assert "| idle | " in done.stdout
