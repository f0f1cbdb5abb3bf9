"""Live strategy updates: swap a strategy's parameters, code or config while the engine runs.

``UpdatesManagement.apply_update`` works against the :class:`UpdatableEngine` protocol; it
validates before touching anything, pauses, swaps and resumes, and rolls back (and alerts
through Diagnostics) on any failure. New code is loaded with :func:`load_fresh_module`, beside
the running module rather than over it, and only once :mod:`fbterm.ops.strategy_files` has
found it, without importing it, to be a strategy file in a strategy folder; a config file
must sit in the running config's folder.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fbterm.ops.alerts import AlertKind, Severity
from fbterm.ops.strategy_files import (
    SourceError,
    check_strategy_code,
    check_update_config,
    strategy_folders,
)

if TYPE_CHECKING:
    from fbterm.config import Config, StrategyConfig
    from fbterm.ops.diagnostics import Diagnostics

log = logging.getLogger(__name__)


@runtime_checkable
class UpdatableEngine(Protocol):
    """What :class:`UpdatesManagement` needs from the engine. All calls come from one thread,
    the engine thread (the control socket handler must marshal the request there)."""

    def strategy_names(self) -> list[str]:
        """Names of the strategies currently loaded."""
        ...

    def strategy_config(self, name: str) -> StrategyConfig:
        """The config the running strategy was built from; KeyError if unknown."""
        ...

    def strategy(self, name: str) -> Any:
        """The live strategy object; KeyError if unknown."""
        ...

    def build_strategy(self, config: StrategyConfig) -> Any:
        """A new, not yet running strategy from a config (resolving ``config.cls`` through
        ``importlib.import_module``, so a freshly loaded module is picked up). Raise on bad params."""
        ...

    def validate_strategy(self, name: str, strategy: Any) -> None:
        """Dry-run a candidate (e.g. ``analyze`` on the strategy's recent bars) without sending
        orders; raise to reject it."""
        ...

    def pause_strategy(self, name: str) -> None:
        """Stop feeding the strategy and taking its signals; positions and orders stay."""
        ...

    def resume_strategy(self, name: str) -> None: ...

    def replace_strategy(self, name: str, new_strategy: Any, config: StrategyConfig) -> Any:
        """Swap the object under ``name`` (positions, open orders and capital stay keyed by the
        name) and record ``config`` as its config; return the old object."""
        ...


class UpdateError(Exception):
    """An update was refused (invalid) before anything changed."""


@dataclass(frozen=True, slots=True)
class UpdateResult:
    ok: bool
    kind: str  # "params", "code" or "config"
    strategies: tuple[str, ...]
    message: str
    rolled_back: bool = False
    not_applied: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_fresh_module(name: str) -> types.ModuleType:
    """Import module ``name`` anew from its source file without touching ``sys.modules``.

    ``importlib.reload`` re-executes into the *same* module dict, so a broken new version would
    half-overwrite the running one and the old strategy's functions would see the new globals.
    A separate module object keeps the old version intact until we decide to switch. Source is
    compiled directly, not via __pycache__, whose mtime check can miss an edit made within the
    same second.
    """
    parent, _, _leaf = name.rpartition(".")
    path = None
    if parent:
        pkg = importlib.import_module(parent)
        path = getattr(pkg, "__path__", None)
    importlib.invalidate_caches()
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise UpdateError(f"cannot find source for module {name!r}")
    source = Path(spec.origin).read_text(encoding="utf-8")
    module = importlib.util.module_from_spec(spec)
    try:
        code = compile(source, spec.origin, "exec")
        exec(code, module.__dict__)
    except Exception as e:
        raise UpdateError(f"module {name} failed to load: {type(e).__name__}: {e}") from e
    return module


class UpdatesManagement:
    """Hot updates of strategy parameters, strategy code, or strategy config sections."""

    def __init__(self, diagnostics: Diagnostics | None = None) -> None:
        self.diagnostics = diagnostics

    def apply_update(
        self,
        engine: UpdatableEngine,
        *,
        strategy: str | None = None,
        params: Mapping[str, Any] | None = None,
        code: str | None = None,
        config: Config | str | Path | None = None,
    ) -> UpdateResult:
        """Validate, pause, swap, resume; roll back and alert on failure.

        Either ``strategy`` with ``params`` (merged into its current params) and/or ``code``
        (``package.module:Class``, re-loaded from disk), or ``config`` (a Config or a path):
        every strategy whose section differs from the running one is swapped, all or nothing.
        Changes outside ``[[strategies]]`` are reported in ``not_applied`` (they need a restart).
        Call on the engine thread.
        """
        if config is not None and (strategy or params or code):
            return self._refused(
                "config", (), "give either a config or a strategy update, not both"
            )
        try:
            if config is not None:
                kind = "config"
                plan, not_applied, reload_specs = self._plan_config(engine, config)
            elif strategy:
                kind = "code" if code else "params"
                plan, not_applied, reload_specs = self._plan_strategy(
                    engine, strategy, params or {}, code
                )
            else:
                return self._refused("params", (), "nothing to update: name a strategy or a config")
        except UpdateError as e:
            return self._refused(
                "config" if config is not None else ("code" if code else "params"),
                (strategy,) if strategy else (),
                str(e),
            )
        names = tuple(n for n, _ in plan)
        if not plan:
            msg = "no strategy changes"
            if not_applied:
                msg += "; needs a restart: " + ", ".join(not_applied)
            self._log(msg, update=kind)
            return UpdateResult(True, kind, (), msg, not_applied=tuple(not_applied))

        saved_modules = {}
        try:
            # --- validate: nothing the engine runs changes in this phase ---
            running = _running_config(engine)
            folders = strategy_folders(running)
            for spec in reload_specs:
                try:
                    check_strategy_code(spec, folders)  # before anything of it runs
                except SourceError as e:
                    raise UpdateError(str(e)) from None
            fresh = {}
            for spec in reload_specs:
                mod_name, _, cls_name = spec.partition(":")
                if mod_name not in fresh:
                    fresh[mod_name] = load_fresh_module(mod_name)
                cls = getattr(fresh[mod_name], cls_name, None)
                if not isinstance(cls, type):
                    raise UpdateError(f"{spec}: no class {cls_name!r} in {mod_name}")
                for meth in ("analyze", "execute"):
                    if not callable(getattr(cls, meth, None)):
                        raise UpdateError(f"{spec}: class has no {meth}() method")
            for mod_name, mod in fresh.items():
                saved_modules[mod_name] = sys.modules.get(mod_name)
                sys.modules[mod_name] = mod
            candidates = {}
            for name, new_cfg in plan:
                try:
                    obj = engine.build_strategy(new_cfg)
                    engine.validate_strategy(name, obj)
                except Exception as e:
                    raise UpdateError(f"{name}: {type(e).__name__}: {e}") from e
                candidates[name] = obj
        except UpdateError as e:
            self._restore_modules(saved_modules)
            return self._refused(kind, names, f"invalid update: {e}")

        # --- swap ---
        old_cfgs = {n: engine.strategy_config(n) for n in names}
        swapped: list[tuple[str, Any]] = []
        current = ""
        stage = ""
        try:
            for name, new_cfg in plan:
                current, stage = name, "pause"
                engine.pause_strategy(name)
                stage = "replace"
                old = engine.replace_strategy(name, candidates[name], new_cfg)
                swapped.append((name, old))
                stage = "resume"
                engine.resume_strategy(name)
                stage = ""
        except Exception as e:
            failure = f"{current}: {stage} failed: {type(e).__name__}: {e}"
            problems = self._roll_back(engine, swapped, old_cfgs, current, stage)
            self._restore_modules(saved_modules)
            msg = f"update failed and was rolled back ({failure})"
            if problems:
                msg += "; rollback problems: " + "; ".join(problems)
            self._log(msg, level="error", update=kind, strategies=list(names))
            self._alert(
                Severity.CRITICAL if problems else Severity.ERROR,
                f"update of {', '.join(names)} failed",
                msg,
            )
            return UpdateResult(
                False, kind, names, msg, rolled_back=True, not_applied=tuple(not_applied)
            )
        msg = f"updated {', '.join(names)}"
        if not_applied:
            msg += "; needs a restart: " + ", ".join(not_applied)
        self._log(msg, update=kind, strategies=list(names))
        return UpdateResult(True, kind, names, msg, not_applied=tuple(not_applied))

    def handle_request(self, engine: UpdatableEngine, request: Mapping[str, Any]) -> dict[str, Any]:
        """The control-socket ``update`` command: {strategy, params, code} or {config}."""
        result = self.apply_update(
            engine,
            strategy=request.get("strategy"),
            params=request.get("params") or None,
            code=request.get("code"),
            config=request.get("config"),
        )
        return result.to_dict()

    # ------------------------------------------------------------------ planning
    def _plan_strategy(
        self, engine: UpdatableEngine, name: str, params: Mapping[str, Any], code: str | None
    ) -> tuple[list[tuple[str, StrategyConfig]], list[str], list[str]]:
        try:
            old = engine.strategy_config(name)
        except KeyError:
            raise UpdateError(
                f"no strategy named {name!r} (running: {', '.join(engine.strategy_names())})"
            ) from None
        if code is not None and ":" not in code:
            raise UpdateError(f"--code must be 'package.module:ClassName', got {code!r}")
        if not params and code is None:
            raise UpdateError("nothing to update: give parameters and/or code")
        new = dataclasses.replace(old, params={**old.params, **params}, cls=code or old.cls)
        return [(name, new)], [], [code] if code else []

    def _plan_config(
        self, engine: UpdatableEngine, config: Config | str | Path
    ) -> tuple[list[tuple[str, StrategyConfig]], list[str], list[str]]:
        from fbterm.config import Config, ConfigError, load_config, to_dict

        if not isinstance(config, Config):
            try:
                config = load_config(check_update_config(config, _running_config(engine)))
            except (ConfigError, SourceError) as e:
                raise UpdateError(str(e)) from None
        running = set(engine.strategy_names())
        wanted = {s.name: s for s in config.strategies}
        plan: list[tuple[str, StrategyConfig]] = []
        reload_specs: list[str] = []
        not_applied: list[str] = [f"strategy {n} added" for n in sorted(set(wanted) - running)]
        not_applied += [f"strategy {n} removed" for n in sorted(running - set(wanted))]
        for name in sorted(running & set(wanted)):
            old, new = engine.strategy_config(name), wanted[name]
            if old != new:
                plan.append((name, new))
                if new.cls != old.cls and ":" in new.cls:
                    reload_specs.append(new.cls)
        current = getattr(engine, "config", None)
        if isinstance(current, Config):
            a, b = to_dict(current), to_dict(config)
            not_applied += [
                f"[{k}]" for k in sorted(a) if k != "strategies" and a.get(k) != b.get(k)
            ]
        return plan, not_applied, reload_specs

    # ------------------------------------------------------------------ rollback
    def _roll_back(
        self,
        engine: UpdatableEngine,
        swapped: list[tuple[str, Any]],
        old_cfgs: Mapping[str, StrategyConfig],
        current: str,
        stage: str,
    ) -> list[str]:
        problems: list[str] = []
        done = {n for n, _ in swapped}
        if current and current not in done and stage in ("pause", "replace"):
            # Paused (or half-paused) but never swapped: resuming restores the old state.
            try:
                engine.resume_strategy(current)
            except Exception as e:
                problems.append(f"{current}: resume failed: {e}; it stays paused")
        for name, old in reversed(swapped):
            try:
                try:
                    engine.pause_strategy(name)
                except Exception as e:  # already paused after a failed resume is fine
                    log.debug("pause during rollback of %s: %s", name, e)
                engine.replace_strategy(name, old, old_cfgs[name])
                engine.resume_strategy(name)
            except Exception as e:
                problems.append(
                    f"{name}: rollback failed: {type(e).__name__}: {e}; it stays paused"
                )
        return problems

    @staticmethod
    def _restore_modules(saved: Mapping[str, types.ModuleType | None]) -> None:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod

    # ------------------------------------------------------------------ reporting
    def _refused(self, kind: str, names: tuple[str, ...], msg: str) -> UpdateResult:
        self._log(msg, level="warning", update=kind, strategies=list(names))
        self._alert(Severity.WARNING, f"update of {', '.join(names) or 'config'} refused", msg)
        return UpdateResult(False, kind, names, msg)

    def _log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        getattr(log, "warning" if level == "warning" else "error" if level == "error" else "info")(
            message
        )
        if self.diagnostics is not None:
            self.diagnostics.log_activity("update", message, level=level, **fields)

    def _alert(self, severity: Severity, title: str, body: str) -> None:
        if self.diagnostics is not None:
            self.diagnostics.alert(
                AlertKind.UPDATE_FAILED, title, body, severity=severity, key=f"update:{title}"
            )


def _running_config(engine: UpdatableEngine) -> Config | None:
    from fbterm.config import Config

    current = getattr(engine, "config", None)
    return current if isinstance(current, Config) else None


__all__ = [
    "UpdatableEngine",
    "UpdateError",
    "UpdateResult",
    "UpdatesManagement",
    "load_fresh_module",
]
