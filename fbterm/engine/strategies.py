"""The engine's strategies as the configuration describes them, and hot updates to them.

:class:`StrategyHost` loads the configured strategies into the executor and is what
:class:`fbterm.ops.UpdatesManagement` drives for a hot update (its ``UpdatableEngine``): every
call comes from the engine thread, so a swap never races a bar.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from fbterm.config import Config, StrategyConfig
from fbterm.model import Bar
from fbterm.strategies.base import StrategyInterface
from fbterm.strategies.executor import StrategyExecutor, configured_sizing


class StrategyHost:
    """Strategies by name: their configs, their live objects (in the executor), their updates.

    ``config`` is the running configuration: an update from a whole config file is compared
    with it to say which of its other sections would need a restart. ``history`` holds the
    recent bars a replacement is validated and warmed on.
    """

    def __init__(
        self,
        config: Config,
        executor: StrategyExecutor,
        history: Mapping[str, deque[Bar]],
    ) -> None:
        self.config = config
        self.executor = executor
        self.history = history
        self.configs: dict[str, StrategyConfig] = {}

    def load(self, default_symbols: Sequence[str]) -> None:
        """Build every configured strategy and hand it to the executor."""
        from fbterm.strategies import create_strategy

        for sc in self.config.strategies:
            strat = create_strategy(sc.cls, sc.name, sc.params)
            self.configs[sc.name] = sc
            symbols = sc.symbols or default_symbols
            self.executor.add_strategy(
                sc.name,
                strat,
                symbols,
                sc.capital,
                spec=sc.cls,
                sizing=configured_sizing(sc.sizing, sc.capital, len(symbols)),
                risk=sc.risk,
                enabled=sc.enabled,
            )

    # -- the UpdatableEngine protocol (fbterm.ops.UpdatesManagement); engine thread only ----
    def strategy_names(self) -> list[str]:
        return list(self.executor.slots)

    def strategy_config(self, name: str) -> StrategyConfig:
        if name not in self.executor.slots:
            raise KeyError(name)
        sc = self.configs.get(name)
        if sc is None:
            # Added by code (tests, embedding), not by config: describe it from its slot.
            slot = self.executor.slots[name]
            sc = StrategyConfig(
                name=name,
                cls=slot.spec,
                symbols=list(slot.symbols),
                capital=slot.capital,
                params=dict(slot.strategy.p),
            )
            self.configs[name] = sc
        return sc

    def strategy(self, name: str) -> StrategyInterface:
        return self.executor.strategy(name)

    def build_strategy(self, config: StrategyConfig) -> StrategyInterface:
        from fbterm.strategies import create_strategy

        return create_strategy(config.cls, config.name, config.params)

    def validate_strategy(self, name: str, strategy: StrategyInterface) -> None:
        """Dry run on the bars the engine has seen: analyze must give a target per bar; and a
        window longer than the history kept is refused (it could never trade)."""
        from fbterm.strategies.base import bars_frame, history_problem

        if isinstance(strategy, StrategyInterface):
            problem = history_problem(strategy, self.config.market.history_bars)
            if problem is not None:
                param, reason = problem
                raise ValueError(f"{name}{'.' + param if param else ''}: {reason}")
        slot = self.executor.slots[name]
        for sym in slot.symbols:
            bars = list(self.history.get(sym, ()))
            if not bars:
                continue
            frame = bars_frame(bars)
            sig = strategy.analyze(frame)
            if "target" not in getattr(sig, "columns", ()) or len(sig) != len(frame):
                raise ValueError(f"{name}: analyze() on {sym} must return a 'target' per bar")

    def pause_strategy(self, name: str) -> None:
        self.executor.pause_strategy(name)

    def resume_strategy(self, name: str) -> None:
        self.executor.resume_strategy(name)

    def replace_strategy(
        self, name: str, new_strategy: StrategyInterface, config: StrategyConfig
    ) -> StrategyInterface:
        slot = self.executor.slots[name]
        # Warm the new objects on the bars their predecessors saw, so they trade from the next bar.
        old = self.executor.replace_strategy(
            name, new_strategy, {sym: list(self.history.get(sym, ())) for sym in slot.symbols}
        )
        slot.spec = config.cls
        if config.capital != slot.capital:
            self.executor.scale_strategy(name, config.capital)
        if config.risk != self.strategy_config(name).risk:
            from fbterm.risk.strategy import StrategyLevelRisk

            slot.risk = StrategyLevelRisk(name, config.risk)
        self.configs[name] = config
        return old


class HostsStrategies:
    """The ``UpdatableEngine`` face of the engine, which holds a :class:`StrategyHost` in
    ``strategies``: every call is the host's (fbterm.ops.UpdatesManagement drives it)."""

    strategies: StrategyHost

    def strategy_names(self) -> list[str]:
        return self.strategies.strategy_names()

    def strategy_config(self, name: str) -> StrategyConfig:
        return self.strategies.strategy_config(name)

    def strategy(self, name: str) -> StrategyInterface:
        return self.strategies.strategy(name)

    def build_strategy(self, config: StrategyConfig) -> StrategyInterface:
        return self.strategies.build_strategy(config)

    def validate_strategy(self, name: str, strategy: StrategyInterface) -> None:
        self.strategies.validate_strategy(name, strategy)

    def pause_strategy(self, name: str) -> None:
        self.strategies.pause_strategy(name)

    def resume_strategy(self, name: str) -> None:
        self.strategies.resume_strategy(name)

    def replace_strategy(
        self, name: str, new_strategy: StrategyInterface, config: StrategyConfig
    ) -> StrategyInterface:
        return self.strategies.replace_strategy(name, new_strategy, config)
