"""TOML data -> config sections: the one generic walker, and the checks across sections.

The walker converts each value to its field's type and checks the field's constraints, refusing
unknown and retired keys; the first problem is a :class:`ConfigError` naming the file, the key path
and the reason. :func:`to_dict` is the way back (what ``check-config`` prints).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import types
import typing
from typing import TYPE_CHECKING, Any, TypeVar

from fbterm.config.sections import NO_LIMIT, RETIRED_KEYS, Config, ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Section = TypeVar("_Section", bound="DataclassInstance")


# ------------------------------------------------------------------------------- builtins

# Strategy classes the config may name without a module path. The strategies package fills
# the real registry; this list lets config validation stay import-light.
BUILTIN_STRATEGIES = ("sma_cross", "mean_reversion", "breakout", "covered_call")


def _toml_name(f: dataclasses.Field[Any]) -> str:
    """The key a field has in the file (``class`` for ``cls``): metadata "toml", else its name."""
    name: str = f.metadata.get("toml", f.name)
    return name


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "table"
    if tp is type(None):
        return "nothing"
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def _got(v: Any) -> str:
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return f"a list {v!r}"[:80]
    return f"{type(v).__name__} {v!r}"


class _Ctx:
    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, reason: str) -> typing.NoReturn:
        from fbterm.redact import redact_text

        # The reason may quote the value, and a value may be a webhook URL with its token.
        raise ConfigError(f"{self.source}: {path}: {redact_text(reason)}")


def _convert(ctx: _Ctx, path: str, tp: Any, value: Any, meta: typing.Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(ctx, path, args[0], value, meta)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            ctx.fail(path, f"expected a table, got {_got(value)}")
        return _build(ctx, path, tp, value)  # type: ignore[arg-type]
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            ctx.fail(path, f"expected {_type_name(tp)}, got {_got(value)}")
        return [_convert(ctx, f"{path}[{i}]", item_tp, v, {}) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            ctx.fail(path, f"expected a table, got {_got(value)}")
        _k_tp, v_tp = typing.get_args(tp)
        if v_tp is Any:
            return dict(value)
        return {k: _convert(ctx, f"{path}.{k}", v_tp, v, meta) for k, v in value.items()}
    if meta.get("no_limit") and value == NO_LIMIT:
        return math.inf  # the limit is off; every comparison against it passes
    if tp is bool:
        if not isinstance(value, bool):
            ctx.fail(path, f"expected true or false, got {_got(value)}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            ctx.fail(path, f"expected an integer, got {_got(value)}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            hint = f'; write "{NO_LIMIT}" for no limit' if meta.get("no_limit") else ""
            ctx.fail(path, f"expected a number, got {_got(value)}{hint}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            ctx.fail(path, f"expected a string, got {_got(value)}")
        if meta.get("path") and "\0" in value:
            ctx.fail(path, "a path must not contain a NUL character")
    _check_constraints(ctx, path, value, meta)
    return value


def _check_constraints(ctx: _Ctx, path: str, v: Any, meta: typing.Mapping[str, Any]) -> None:
    if "choices" in meta and v not in meta["choices"]:
        ctx.fail(path, f"must be one of {', '.join(map(repr, meta['choices']))}, got {v!r}")
    if isinstance(v, int | float) and not isinstance(v, bool):
        if not math.isfinite(v):
            what = "a number" if v != v else "a finite number"
            hint = f'; write "{NO_LIMIT}" for no limit' if meta.get("no_limit") else ""
            ctx.fail(path, f"must be {what}, got {v}{hint}")
        for key, ok, word in (
            ("gt", operator.gt, ">"),
            ("ge", operator.ge, ">="),
            ("lt", operator.lt, "<"),
            ("le", operator.le, "<="),
        ):
            if key in meta and not ok(v, meta[key]):
                ctx.fail(path, f"must be {word} {_num(meta[key])}, got {_num(v)}")


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _build(ctx: _Ctx, path: str, cls: type[_Section], data: dict[str, Any]) -> _Section:
    hints = typing.get_type_hints(cls)
    fields = {_toml_name(f): f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    prefix = f"{path}." if path else ""
    for key in data:
        if key in RETIRED_KEYS and key not in fields:
            ctx.fail(f"{prefix}{key}", f"no longer accepted: {RETIRED_KEYS[key]}")
        if key not in fields:
            near = _closest(key, list(fields))
            hint = f" (did you mean {near!r}?)" if near else ""
            ctx.fail(f"{prefix}{key}", f"unknown key{hint}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            kwargs[f.name] = _convert(ctx, f"{prefix}{name}", hints[f.name], data[name], f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            ctx.fail(f"{prefix}{name}", "is required")
    return cls(**kwargs)


def _closest(word: str, options: list[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return m[0] if m else None


def _validate_whole(ctx: _Ctx, cfg: Config) -> None:
    seen: set[str] = set()
    for i, s in enumerate(cfg.strategies):
        where = f"strategies[{i}]"
        if not s.name.strip():
            ctx.fail(f"{where}.name", "must not be empty")
        if s.name in seen:
            ctx.fail(f"{where}.name", f"duplicate strategy name {s.name!r}")
        seen.add(s.name)
        if s.cls not in BUILTIN_STRATEGIES and ":" not in s.cls:
            ctx.fail(
                f"{where}.class",
                f"unknown strategy {s.cls!r}: use one of {', '.join(BUILTIN_STRATEGIES)} "
                "or 'package.module:ClassName'",
            )
        for sym in s.symbols:
            if sym not in cfg.market.symbols:
                ctx.fail(f"{where}.symbols", f"{sym!r} is not in market.symbols")
    if len(set(cfg.market.symbols)) != len(cfg.market.symbols):
        ctx.fail("market.symbols", "has duplicates")
    for sym in cfg.market.symbols:
        if not sym or sym != sym.strip().upper():
            ctx.fail("market.symbols", f"symbols are upper-case tickers, got {sym!r}")
    if cfg.market.source == "csv" and not cfg.market.csv.path:
        ctx.fail("market.csv.path", "is required when market.source = 'csv'")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(cfg.market.timezone)
    except Exception:
        ctx.fail("market.timezone", f"unknown time zone {cfg.market.timezone!r}")
    paper = cfg.broker.paper
    if paper.maintenance_margin * paper.leverage >= 1:
        ctx.fail(
            "broker.paper.maintenance_margin",
            f"must be < 1 / leverage ({1 / paper.leverage:g}), got {paper.maintenance_margin:g}: "
            "a position bought with all the buying power would be liquidated at once",
        )
    if cfg.market.calendar != "XNYS":
        # Imported only for another calendar: the default needs no check at every start.
        from fbterm.sessions import CalendarError, check_calendar

        try:
            check_calendar(cfg.market.calendar)
        except CalendarError as e:
            ctx.fail("market.calendar", str(e))
    if cfg.broker.ib.reconnect_max_delay < cfg.broker.ib.reconnect_initial_delay:
        ctx.fail("broker.ib.reconnect_max_delay", "must be >= broker.ib.reconnect_initial_delay")


def section_from_dict(cls: type[_Section], data: dict[str, Any], source: str) -> _Section:
    """One config section (a StrategyRiskConfig from command-line options, say), checked as the
    file's are; a problem is a ConfigError ``source: key: reason``."""
    return _build(_Ctx(source), "", cls, data)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    ctx = _Ctx(source)
    cfg = _build(ctx, "", Config, data)
    cfg = dataclasses.replace(cfg, source=source)
    _validate_whole(ctx, cfg)
    return cfg


def to_dict(obj: Any) -> Any:
    """The config as plain TOML-shaped data (what ``check-config`` prints)."""
    if dataclasses.is_dataclass(obj):
        return {
            _toml_name(f): _no_limit_as_word(f, to_dict(getattr(obj, f.name)))
            for f in dataclasses.fields(obj)
            if not f.metadata.get("internal")
        }
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _no_limit_as_word(f: dataclasses.Field[Any], v: Any) -> Any:
    # An unset limit is written the way the file says it, so the dump loads back.
    return NO_LIMIT if f.metadata.get("no_limit") and v == math.inf else v
