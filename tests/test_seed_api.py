"""The design document's public API: every seed class, under its name, with its methods.

This is the contract README.md's module map promises; each class is exercised for real by the
area's own tests, this file only guards the names against drift.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap

import pytest

SEED = {
    "fbterm.data.retrieval:DataRetrieval": ["fetch_realtime_data", "fetch_historical_data"],
    "fbterm.data.storage:DataStorage": ["save_to_csv", "load_from_csv"],
    "fbterm.data.processing:DataProcessing": ["clean_data", "transform_data"],
    "fbterm.strategies.base:StrategyInterface": ["analyze", "execute"],
    "fbterm.strategies.executor:StrategyExecutor": ["run_strategy", "scale_strategy"],
    "fbterm.risk.strategy:StrategyLevelRisk": ["apply_stop_loss", "apply_take_profit"],
    "fbterm.risk.portfolio:PortfolioLevelRisk": ["calculate_max_drawdown", "halt_trading"],
    "fbterm.backtest.backtester:CustomBacktester": [
        "run_backtest",
        "calculate_performance_metrics",
    ],
    "fbterm.backtest.analysis:PerformanceAnalysis": ["visualize_results"],
    "fbterm.execution.brokers.ib:BrokerIntegration": [
        "execute_order",
        "query_open_orders",
        "query_positions",
        "query_account_details",
    ],
    "fbterm.execution.orders:OrderManagement": [
        "create_order",
        "monitor_order",
        "cancel_order",
        "modify_order",
    ],
    "fbterm.execution.orders:OrderQueue": ["enqueue_order", "dequeue_order"],
    "fbterm.metrics.live:MetricsCalculation": [
        "calculate_real_time_metrics",
        "calculate_post_trade_metrics",
    ],
    "fbterm.metrics.optimization:Optimization": ["apply_half_kelly"],
    "fbterm.ops.updates:UpdatesManagement": ["apply_update"],
    "fbterm.ops.diagnostics:Diagnostics": ["send_alert", "log_activity"],
}


@pytest.mark.parametrize("spec", sorted(SEED))
def test_seed_class_has_its_methods(spec: str) -> None:
    mod_name, cls_name = spec.split(":")
    cls = getattr(importlib.import_module(mod_name), cls_name)
    assert inspect.isclass(cls)
    for method in SEED[spec]:
        fn = getattr(cls, method, None)
        assert callable(fn), f"{cls_name}.{method} is missing"
        if getattr(fn, "__isabstractmethod__", False):
            # the interface's own hook: every built-in strategy must implement it
            from fbterm.strategies import STRATEGIES

            for impl in STRATEGIES.values():
                assert not getattr(getattr(impl, method), "__isabstractmethod__", False)
            continue
        # implemented, not a placeholder: a body beyond a docstring, "..." or a bare raise
        assert not is_stub(fn), f"{cls_name}.{method} is a stub"


def is_stub(fn: object) -> bool:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))  # type: ignore[arg-type]
    body = tree.body[0].body  # type: ignore[attr-defined]
    real = [
        s
        for s in body
        if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        and not isinstance(s, ast.Pass)
        and not (isinstance(s, ast.Raise) and "NotImplementedError" in ast.unparse(s))
    ]
    return not real


def test_the_stub_check_notices_a_stub() -> None:
    class Seed:
        def placeholder(self) -> None:
            """Does nothing yet."""
            raise NotImplementedError

        def real(self) -> int:
            return 1

    assert is_stub(Seed.placeholder) and not is_stub(Seed.real)


def test_every_seed_class_is_exported_from_the_package_root() -> None:
    import fbterm

    for spec in SEED:
        cls_name = spec.split(":")[1]
        assert getattr(fbterm, cls_name) is getattr(
            importlib.import_module(spec.split(":")[0]), cls_name
        )


def test_seed_classes_are_also_importable_from_their_packages() -> None:
    # fbterm.ops and fbterm.metrics became packages; "from fbterm.ops import Diagnostics" stays.
    from fbterm.metrics import MetricsCalculation, Optimization
    from fbterm.metrics.live import MetricsCalculation as live_mc
    from fbterm.metrics.optimization import Optimization as opt_o
    from fbterm.ops import Diagnostics, UpdatesManagement
    from fbterm.ops.diagnostics import Diagnostics as diag_d
    from fbterm.ops.updates import UpdatesManagement as upd_u

    assert MetricsCalculation is live_mc and Optimization is opt_o
    assert Diagnostics is diag_d and UpdatesManagement is upd_u
