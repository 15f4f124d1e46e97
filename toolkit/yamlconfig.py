"""Strict YAML configuration: pydantic validation with errors that point at file, line and key.

A typo never produces a traceback. It produces

    farm.yaml:12: devices[1].nam: unknown key (did you mean 'name'?)

Used for device profiles and farm files (STYLE.md #5).
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from toolkit.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[Any, ...]


def load_yaml(path: str | Path) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file; return the data and a map from key path to 1-based line number."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found", "check the path") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_yaml(text, str(path))


def parse_yaml(text: str, name: str = "<string>") -> tuple[Any, dict[Loc, int]]:
    """Like load_yaml, for text already in memory; `name` is used in messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}", "check indentation and quoting") from exc
    lines: dict[Loc, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*loc, key)] = key_node.start_mark.line + 1
            _collect_lines(value_node, (*loc, key), lines)
            lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, (*loc, index), lines)


def validate(model: type[M], data: Any, name: str, lines: dict[Loc, int] | None = None) -> M:
    """Validate data against a pydantic model; raise ConfigError with one line per problem."""
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Unknown keys first: a typo'd key usually also causes the "missing" error for the real one.
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        messages = [format_error(model, err, name, lines or {}) for err in errors]
        more = f" (and {len(messages) - 1} more problem(s))" if len(messages) > 1 else ""
        raise ConfigError(
            messages[0] + more,
            "fix the key or value named above; `edgetk profiles validate` / `edgetk farm validate` check a file",
            problems=messages,
        ) from None


def load_config(model: type[M], path: str | Path) -> M:
    """Read and validate a YAML file in one step."""
    data, lines = load_yaml(path)
    return validate(model, data, str(path), lines)


def format_error(model: type[BaseModel], err: dict[str, Any], name: str, lines: dict[Loc, int]) -> str:
    loc = tuple(err.get("loc", ()))
    data_loc = _data_loc(model, loc)
    line = _line_for(data_loc, lines)
    where = f"{name}:{line}" if line else name
    field = _format_loc(data_loc) or "(top level)"
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        key = data_loc[-1] if data_loc else "?"
        allowed = sorted(_allowed_keys(model, data_loc[:-1]))
        message = f"unknown key{_suggest(str(key), allowed)}"
        if not _suggest(str(key), allowed) and allowed:
            message += f" (allowed: {', '.join(allowed)})"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        options = [o.strip().strip("'\"") for o in str(expected).replace(" or ", ",").split(",") if o.strip()]
        got = err.get("input")
        message = f"{got!r} is not one of {', '.join(options)}{_suggest(str(got), options)}"
    else:
        message = str(err.get("msg", "invalid value"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
    return f"{where}: {field}: {message}"


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


# --- walking the model's type along an error location -------------------------------------------


def _data_loc(model: type[BaseModel], loc: Loc) -> Loc:
    """Drop the pieces pydantic adds to a location that are not in the data (union tags, etc.)."""
    out: list[Any] = []
    current: Any = model
    for part in loc:
        candidates = _models_in(current)
        if isinstance(part, str) and candidates:
            if any(part in _field_names(m) for m in candidates):
                field_type = _field_type(candidates, part)
                out.append(_alias_of(candidates, part))
                current = field_type
                continue
            tagged = [m for m in candidates if _tag_matches(m, part)]
            if tagged:  # a discriminated-union tag, not a data key
                current = tagged[0]
                continue
            out.append(part)
            current = None
            continue
        if isinstance(part, str) and part.startswith(("function-", "list[", "dict[", "union[", "tagged-union[")):
            continue
        out.append(part)
        current = _item_type(current)
    return tuple(out)


def _allowed_keys(model: type[BaseModel], data_loc: Loc) -> set[str]:
    current: Any = model
    for part in data_loc:
        candidates = _models_in(current)
        if isinstance(part, str) and candidates:
            current = _field_type(candidates, part)
        else:
            current = _item_type(current)
    keys: set[str] = set()
    for m in _models_in(current):
        keys |= {f.alias or n for n, f in m.model_fields.items()}
    return keys


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if tp is None:
        return []
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[type[BaseModel]] = []
        for arg in typing.get_args(tp):
            out += _models_in(arg)
        return out
    return []


def _field_names(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}


def _field_type(models: list[type[BaseModel]], key: str) -> Any:
    for m in models:
        for n, f in m.model_fields.items():
            if key in (n, f.alias):
                return f.annotation
    return None


def _alias_of(models: list[type[BaseModel]], key: str) -> str:
    for m in models:
        f = m.model_fields.get(key)
        if f is not None and f.alias:
            return f.alias
    return key


def _tag_matches(model: type[BaseModel], tag: str) -> bool:
    for f in model.model_fields.values():
        args = typing.get_args(f.annotation)
        if typing.get_origin(f.annotation) is typing.Literal and tag in args:
            return True
    return model.__name__ == tag


def _item_type(tp: Any) -> Any:
    """The element type of list[X] / dict[K, X] / Optional[list[X]]..."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _item_type(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None):
                inner = _item_type(arg)
                if inner is not None:
                    return inner
        return None
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(tp)
        return args[0] if args else None
    if origin is dict:
        args = typing.get_args(tp)
        return args[1] if len(args) == 2 else None
    return None
