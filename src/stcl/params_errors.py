"""How params.yaml's faults read: the YAML reader, and one line per fault by its dotted key path.

`stcl.params` validates; this module words what it found (pydantic's messages in params.yaml's terms) and
reads the file's YAML (``1e-4`` is a number). Used by `stcl.params.load_params` / `parse_params` only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

__all__ = ["read_yaml", "yaml_error_line", "fault_lines"]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` as a float as YAML 1.2 does (PyYAML's 1.1 rules want ``1.0e-4`` and
    give the string "1e-4", which strict numbers would refuse)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def yaml_error_line(path: Path, err: yaml.YAMLError) -> str:
    """One line: ``params.yaml:3:5: not valid YAML: <problem> (<context> at line N)``."""
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1})"
    elif context:
        problem += f" ({context})"
    return f"{where}: not valid YAML: {problem}"


def read_yaml(text: str) -> Any:
    """The YAML document in ``text`` (safe: plain data only); raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def fault_lines(source: str, err: ValidationError, data: dict[str, Any], stages: tuple[str, ...]) -> str:
    """``source: invalid params (N problem(s))`` and one line per fault, by dotted key path; a fault of
    ``train:`` is not repeated for each of ``stages``, which inherit it (`stcl.params.Params._inherit_train`
    copies ``train:`` into every stage section), unless the stage's own section writes the key too."""
    errors = [(tuple(e["loc"]), _message(e)) for e in err.errors()]
    in_train = {(loc[1:], msg) for loc, msg in errors if loc[:1] == ("train",)}

    def inherited(loc: tuple, msg: str) -> bool:
        return (
            len(loc) > 1 and loc[0] in stages and (loc[1:], msg) in in_train and not _written(data.get(loc[0]), loc[1:])
        )

    shown = [(loc, msg) for loc, msg in errors if not inherited(loc, msg)]
    lines = [f"{source}: invalid params ({len(shown)} problem(s))"]
    for loc, msg in shown:
        # a root validator's message names its keys
        lines.append(f"  {'.'.join(str(p) for p in loc)}: {msg}" if loc else f"  {msg}")
    return "\n".join(lines)


def _message(error: Any) -> str:
    """pydantic's message of one fault, in params.yaml's words (a wrong type quotes what was written)."""
    kind, value = error["type"], error.get("input")
    if kind in ("extra_forbidden", "missing"):
        return "unknown key" if kind == "extra_forbidden" else "missing key"
    msg = error["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") and isinstance(value, (bool, int, float, str)):
        msg += f", got {json.dumps(value)}"
    return msg


def _written(section: Any, path: tuple) -> bool:
    """Whether the raw ``section`` of params.yaml itself holds the key ``path``."""
    for key in path:
        if isinstance(section, dict) and key in section:
            section = section[key]
        elif isinstance(section, list) and isinstance(key, int) and key < len(section):
            section = section[key]
        else:
            return False
    return True
