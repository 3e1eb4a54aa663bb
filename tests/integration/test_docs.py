"""What the docs show a user is true: the README's configuration reference and the example file load."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.app import Gateway
from gateway.config import load_config, parse_config

ROOT = Path(__file__).parents[2]


def test_readme_configuration_reference_is_a_valid_config() -> None:
    """The YAML block under "Configuration reference" in the README validates, key for key."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Configuration reference", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    config = parse_config(yaml.safe_load(block.group(1)), "README.md")
    assert {"legacy", "new"} <= set(config.csms)
    assert config.chargers["CP002"].route is not None and config.chargers["CP002"].route.shadow == "new"


def test_example_config_passes_check_config() -> None:
    """examples/gateway.yaml loads and its mapping tables and translator options check out."""
    config = load_config(ROOT / "examples" / "gateway.yaml")
    assert Gateway(config).check() > 0


def test_readme_vendor_example_is_a_valid_config() -> None:
    """The vendors: example in the README validates against the config model."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Cloud-locked chargers", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    data = {"csms": {"new": {"url": "ws://x:1/ocpp", "ocpp": "2.0.1"}}, **yaml.safe_load(block.group(1))}
    config = parse_config(data, "README.md")
    assert config.vendors["easee-site-a"].adapter == "easee"
