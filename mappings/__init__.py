"""Declarative mapping tables, one YAML file per table, operator-extendable.

A table file looks like::

    description: 1.6 StopTransaction reason <-> 2.0.1 stoppedReason
    rows:
      - {v16: Local, v201: Local}
      - {v16: UnlockCommand, v201: Other, direction: to_v201, note: "2.0.1 has no UnlockCommand reason"}
      - {v16: Other, v201: GroundFault, direction: to_v16}

``direction`` is ``both`` (default), ``to_<right>`` (only left -> right)
or ``to_<left>`` (only right -> left), so one row states one fact and both
translation directions read it. Operators add rows, or override built-in
ones, with their own files (same name and shape) passed as ``extra_dirs``;
a later row wins over an earlier one for the same key. Loading fails with
``MappingError`` naming the file and the row, and the gateway refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

BUILTIN_DIR = Path(__file__).parent
_extra_dirs: list[Path] = []


class MappingError(Exception):
    """A mapping table that cannot be used: names the file and the row."""


@dataclass(frozen=True)
class Row:
    file: str
    index: int  # 1-based position in the file's rows
    data: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return self.data[key]
        except KeyError:
            raise MappingError(f"{self.file}: row {self.index}: missing column {key!r}") from None


_generation = 0


def generation() -> int:
    """Changes whenever the operator directories change: caches built from tables compare it."""
    return _generation


def set_extra_dirs(dirs: list[Path]) -> None:
    """Operator mapping directories, searched after the built-in one (call once at start-up)."""
    global _generation
    _extra_dirs[:] = [Path(d) for d in dirs]
    _generation += 1
    rows.cache_clear()
    two_way.cache_clear()


def _read(path: Path) -> list[Row]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise MappingError(f"{path}: expected a mapping with a 'rows' list")
    out = []
    for i, r in enumerate(doc["rows"], start=1):
        if not isinstance(r, dict):
            raise MappingError(f"{path}: row {i}: expected a mapping, got {r!r}")
        out.append(Row(str(path), i, r))
    return out


def read_rows(path: Path) -> tuple[Row, ...]:
    """The rows of one table file named directly (e.g. a per-charger file), not looked up by table name."""
    if not Path(path).is_file():
        raise MappingError(f"{path}: no such mapping file")
    return tuple(_read(Path(path)))


@cache
def rows(name: str) -> tuple[Row, ...]:
    """All rows of table ``name``: the built-in file's, then each operator file's."""
    paths = [d / f"{name}.yaml" for d in [BUILTIN_DIR, *_extra_dirs]]
    found = [p for p in paths if p.is_file()]
    if not found:
        raise MappingError(f"no mapping table {name!r} in {', '.join(str(p.parent) for p in paths)}")
    result: list[Row] = []
    for p in found:
        result.extend(_read(p))
    return tuple(result)


@cache
def two_way(name: str, left: str, right: str) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """(left -> right, right -> left) dictionaries of table ``name``, honouring ``direction``.

    In each direction the first ``both`` row for a key is the canonical one and
    a one-way row for that direction overrides it; a later operator row
    overrides a built-in one.
    """
    fwd: dict[Any, Any] = {}
    rev: dict[Any, Any] = {}
    for row in rows(name):
        direction = row.get("direction", "both")
        if direction not in ("both", f"to_{left}", f"to_{right}"):
            raise MappingError(
                f"{row.file}: row {row.index}: direction must be both, to_{left} or to_{right}, not {direction!r}"
            )
        a, b = row[left], row[right]
        builtin = row.file.startswith(str(BUILTIN_DIR))
        if direction in ("both", f"to_{right}"):
            if direction != "both" or a not in fwd or not builtin:
                fwd[a] = b
        if direction in ("both", f"to_{left}"):
            if direction != "both" or b not in rev or not builtin:
                rev[b] = a
    return fwd, rev


def check_all() -> int:
    """Load every table (built-in and operator) so a broken one stops start-up; returns the row count."""
    names = {p.stem for d in [BUILTIN_DIR, *_extra_dirs] for p in Path(d).glob("*.yaml")}
    return sum(len(rows(n)) for n in sorted(names))
