"""A production install works as the README says: a wheel with its tables, and a systemd unit that verifies."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "examples" / "ocpp-gateway.service"
# Not part of a fresh clone: local environments, caches and build output.
NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                    "*.db", "*.db-*")


@pytest.mark.slow
def test_the_wheel_installs_and_runs_check_config_outside_the_checkout(tmp_path: Path) -> None:
    """`python -m build` makes a wheel holding every mapping table, the admin console's files and the console
    script, which works installed."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = dist.glob("ocpp_migration_gateway-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "ocpp-gateway = gateway.cli:main" in zf.read(entry_points).decode()
    tables = {f"mappings/{p.name}" for p in (ROOT / "mappings").glob("*.yaml")}
    assert tables and tables <= names
    console = {f"gateway/console/{p.name}" for p in (ROOT / "gateway" / "console").glob("*.*")
               if p.suffix in (".html", ".js", ".css")}
    assert console >= {"gateway/console/index.html", "gateway/console/console.js"} and console <= names
    assert not any(n.startswith("tests/") for n in names)

    # Install it apart from the checkout (dependencies come from this environment) and use it from elsewhere.
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import gateway, mappings; print(gateway.__file__, mappings.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert all(path.startswith(str(site)) for path in where.stdout.split()), where.stdout
    read_page = "from gateway.console import asset; print(asset('index.html').decode())"
    page = subprocess.run([sys.executable, "-c", read_page], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=True)
    assert '<script src="/console/console.js"' in page.stdout
    shutil.copy(ROOT / "examples" / "gateway.yaml", tmp_path / "gateway.yaml")
    checked = subprocess.run([str(site / "bin" / "ocpp-gateway"), "check-config", "--config", "gateway.yaml"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"OK \(2 CSMS, 3 chargers, \d+ mapping rows\)", checked.stdout)


def _unit_settings() -> dict[str, str]:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


def test_the_systemd_unit_runs_the_gateway_as_the_readme_says() -> None:
    """The unit runs `ocpp-gateway run` as its own user, restarts on failure, stops with SIGTERM and sizes LimitNOFILE
    by the README's rule (at least 3 x chargers, for the charger count its comment promises)."""
    unit = _unit_settings()
    assert unit["User"] == "ocpp-gateway"
    assert unit["ExecStart"] == "/opt/ocpp-gateway/bin/ocpp-gateway run --config /etc/ocpp-gateway/gateway.yaml"
    assert unit["Restart"] == "on-failure" and unit["KillSignal"] == "SIGTERM"
    promised = re.search(r"enough for about ([\d,]+) chargers", UNIT.read_text())
    assert promised is not None
    assert int(unit["LimitNOFILE"]) >= 3 * int(promised.group(1).replace(",", ""))
    rule = r"`LimitNOFILE`\s+\(or\s+`ulimit\s+-n`\)\s+to\s+at\s+least\s+3\s+x\s+chargers"
    assert re.search(rule, (ROOT / "README.md").read_text())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` has nothing to say about the unit (it only warns on stderr, so stderr must be empty);
    the ExecStart binary is pointed at this environment's console script, as verify checks that it exists."""
    installed = Path(sys.executable).parent / "ocpp-gateway"
    unit = tmp_path / "ocpp-gateway.service"
    unit.write_text(UNIT.read_text().replace("/opt/ocpp-gateway/bin/ocpp-gateway", str(installed)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    # The check can fail: a misspelt key is reported.
    unit.write_text(unit.read_text().replace("KillSignal=", "KilSignal="))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "Unknown key 'KilSignal'" in result.stderr
