"""``python -m gateway.benchkit.memory`` holds idle chargers on a gateway and says what each one costs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.parametrize(("mode", "header", "line"), [
    ([], r"^Python heap per idle charger: [\d,]+ B \([\d.]+ KiB\), \d+ blocks$", r"^\s+[\d,]+\s+[\d.]+\s+\S+:\d+$"),
    (["--objects"], r"^RSS per idle charger: [\d.]+ KiB as running, [\d.]+ KiB after a full collection$",
     r"^\s+[\d,]+\s+1\.0\s+gateway\.session\.ChargerSession$"),
])
def test_it_holds_the_chargers_and_prints_their_cost_by_site_or_by_object(mode: list[str], header: str,
                                                                          line: str) -> None:
    """Every charger asked for is held, and the figures per charger come by allocation site or by object kind."""
    out = subprocess.run([sys.executable, "-m", "gateway.benchkit.memory", "--chargers", "30", "--top", "400",
                          *mode], capture_output=True, text=True, timeout=100, check=True).stdout
    assert "idle chargers held: 30 (failed 0)" in out
    assert re.search(header, out, re.MULTILINE), out
    assert re.search(line, out, re.MULTILINE), out  # one session per charger, or a site by file and line
