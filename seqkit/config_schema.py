"""Plain dicts (TOML tables, checkpoint payloads, ``--set`` overrides) onto frozen dataclasses.

The one validator behind :class:`seqkit.models.config.ModelConfig` and
:class:`seqkit.training.config.RecipeConfig`: nested dataclass fields are built from nested
tables, every key is checked against the fields (an unknown key names the valid ones and the
closest), every value against its annotation (``int`` is accepted for ``float``; a string for a
``StrEnum``, which stores as its plain value), and errors say where the value came from (a
file, an override, a checkpoint). Range and conflict checks stay in each dataclass's
``__post_init__``; closed sets of choices are ``StrEnum`` fields checked by :func:`choice`.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from enum import Enum, StrEnum
from typing import Any, TypeVar

from seqkit.errors import ConfigError

_E = TypeVar("_E", bound=StrEnum)


def to_plain(obj: Any) -> Any:
    """A (nested) dataclass as nested plain dicts, Enums as their values; others as they are.

    Plain values matter: checkpoints are read with ``torch.load(weights_only=True)``, which
    refuses to rebuild Enum members.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    return obj


def dotted(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as one level of dotted keys: ``{"encoder": {"hidden": 160}}`` becomes
    ``{"encoder.hidden": 160}`` (the keys ``--set`` takes)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def choice(enum: type[_E], value: Any, key: str) -> _E:
    """``value`` (a member or its string) as a member of ``enum``.

    Dataclasses call this in ``__post_init__`` so that ``TrainConfig(optimizer="sgd")`` works
    like a recipe does.

    Raises:
        ConfigError: ``value`` is none of the choices; the message names ``key`` and them all.
    """
    try:
        return enum(value)
    except ValueError:
        raise ConfigError(f"{key} must be one of {', '.join(enum)}, found {value!r}") from None


def build(
    cls: type, data: Any, *, prefix: str = "", source: str = "config",
    origins: dict[str, str] | None = None,
) -> Any:
    """Build dataclass ``cls`` from nested dict ``data``, checking keys and types.

    Args:
        cls: a dataclass whose fields are scalars (``int``, ``float``, ``str``, ``bool``,
            unions with ``None``) or dataclasses of the same kind.
        data: the nested dict; missing keys take the defaults.
        prefix: dotted path of ``data`` in the whole config (``"model.encoder"``), for messages.
        source: where ``data`` came from (``"recipe ctc.toml"``), for messages.
        origins: dotted keys that came from elsewhere (``--set`` overrides) and their source.

    Raises:
        ConfigError: an unknown key, a wrong type or an invalid value, naming key and source.
    """
    origins = origins or {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origins.get(prefix, source)}: {prefix or 'the config'} must be a table, found "
            f"{data!r}"
        )
    hints = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in hints:
            raise unknown_key(dotted, list(hints), origins.get(dotted, source))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, tp):  # a table, or already built
                value = build(tp, value, prefix=dotted, source=source, origins=origins)
            kwargs[key] = value
            continue
        ok, converted = _matches(value, tp)
        if not ok:
            raise ConfigError(
                f"{origins.get(dotted, source)}: {dotted} must be a {_type_name(tp)}, found "
                f"{value!r} ({type(value).__name__})"
            )
        if _is_str_enum(tp):  # checked here, so that a bad --set names the override
            try:
                converted = choice(tp, converted, dotted)
            except ConfigError as err:
                raise ConfigError(f"{origins.get(dotted, source)}: {err}") from None
        kwargs[key] = converted
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def unknown_key(key: str, valid: list[str], source: str) -> ConfigError:
    """The error for dotted ``key`` among ``valid`` sibling names, with a did-you-mean."""
    prefix = key.rpartition(".")[0]
    full_valid = [f"{prefix}.{v}" if prefix else v for v in valid]
    close = difflib.get_close_matches(key, full_valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(
        f"{source}: unknown key {key}{hint}; valid keys here are {', '.join(full_valid)}"
    )


def apply_overrides(
    cls: type, data: dict[str, Any], overrides: list[str], origins: dict[str, str]
) -> dict[str, Any]:
    """Return a copy of nested ``data`` with ``KEY=VALUE`` overrides (``--set``) applied.

    Keys are checked against ``cls``'s fields so that a typo is reported with the valid keys;
    values are TOML literals, and a value given for a string field is kept as written. Each
    key set is recorded in ``origins`` so that a type error names the override.
    """
    result = _deep_copy(data)
    for text in overrides:
        key, value = _parse_override(text)
        parts = key.split(".")
        node, owner = result, cls
        for depth, part in enumerate(parts):
            dotted = ".".join(parts[: depth + 1])
            hints = _field_types(owner)
            if part not in hints:
                raise unknown_key(dotted, list(hints), f"--set {text}")
            tp = hints[part]
            last = depth == len(parts) - 1
            if dataclasses.is_dataclass(tp):
                if last:
                    raise ConfigError(
                        f"--set {text}: {dotted} is a table; set one of its keys, e.g. "
                        f"{dotted}.{fields(tp)[0].name}=..."
                    )
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    child = node[part] = {}
                node, owner = child, tp
                continue
            if not last:
                raise ConfigError(f"--set {text}: {dotted} is a value, not a table")
            if tp is str or tp == (str | None) or _is_str_enum(tp):
                value = text.partition("=")[2].strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
            node[part] = value
            origins[key] = f"--set {text}"
    return result


def _parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=3e-4"`` -> ``("train.lr", 0.0003)``; bare words are strings."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"override {text!r} is not KEY=VALUE: expected e.g. --set train.lr=3e-4"
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # an unquoted word such as sgd or a path
    return key, value


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _is_str_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, StrEnum)


def _type_name(tp: Any) -> str:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    if _is_str_enum(tp):
        return f"string ({', '.join(tp)})"
    return {int: "integer", float: "number", str: "string", bool: "true/false",
            type(None): "none"}.get(tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits the annotation ``tp``, and the value converted (int -> float)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        for option in typing.get_args(tp):
            ok, converted = _matches(value, option)
            if ok:
                return True, converted
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if _is_str_enum(tp):  # which string: see build
        return isinstance(value, str), value
    return False, value
