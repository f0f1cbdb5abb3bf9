"""CustomBacktester: runs any StrategyInterface on historical bars, two ways that agree.

* **fast** (default): ``analyze`` once over the whole history, then a simulation that steps
  only from one target change to the next (one Python step per order; the equity curve,
  positions and trades are built with numpy from the fills).
* **replay**: bars one at a time through ``on_bar`` -> ``execute`` -> risk gate -> the paper
  broker's fill model, as the live engine does.

Conventions (those of backtesting.py, so a peer can check us):

* the target from bar t is acted on at bar t+1's open: ``execute`` runs with ``ctx.price`` =
  that open and ``ctx.equity`` marked at it (live, a bar closes when the next price arrives),
  and its market orders fill at that open through :func:`fbterm.execution.brokers.fills.match_order`;
* commission is a fraction of traded value or IB per-share, charged on every fill (entry and
  exit alike), from the same commission models as paper trading;
* sizing modes fixed / cash / fraction / all_in via :func:`target_quantity`; all_in buys
  whole units with the equity left after the closing leg's commission;
* a position still open at the end is marked at the last close in the equity curve but is not
  a closed trade;
* stop-loss / take-profit / trailing stop (StrategyRiskConfig) are checked on every bar from
  the entry bar on, after that bar's open fills: the stop first when both are touched; a stop
  fills at the stop or at the open when the bar gaps through it, a take-profit at its level or
  the open when it gaps beyond; after a stop, the strategy's next target acts even if it
  repeats (``forget_target``);
* ``risk_gate(order) -> reason | None`` is called for every order before it can fill, so the
  engine's pre-trade checks plug in unchanged; a rejected order is logged and never fills.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fbterm.config import StrategyRiskConfig
from fbterm.execution.brokers.fills import (
    CommissionModel,
    FractionCommission,
    MarketUpdate,
    PerShareCommission,
    match_order,
)
from fbterm.model import Bar, Instrument, Option, Order, OrderType, Side, Stock
from fbterm.strategies.base import (
    Sizing,
    StrategyContext,
    StrategyError,
    StrategyInterface,
    target_quantity,
)

RiskGate = Callable[[Order], "str | None"]
Progress = Callable[[float], None]

REQUIRED_COLUMNS = ("open", "high", "low", "close")


class BacktestError(ValueError):
    """A backtest cannot run or failed; the message is one line naming the cause."""


# ------------------------------------------------------------------------------- result


@dataclass
class BacktestResult:
    """What a backtest produced. ``metrics`` is filled by calculate_performance_metrics."""

    equity: pd.Series
    trades: pd.DataFrame
    fills: pd.DataFrame
    bars: pd.DataFrame
    metrics: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))
    signals: pd.DataFrame | None = None
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame)
    position: pd.Series | None = None  # underlying quantity held after each bar
    strategy: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "fast"
    cash: float = 0.0
    warmup_bar: int = 0  # first bar whose indicators are all defined (buy & hold starts here)
    elapsed: float = 0.0


# ------------------------------------------------------------------------ small helpers


def make_commission(commission: float | str | CommissionModel | None) -> CommissionModel:
    """A commission model from a fraction (0.002), 'ib'/'per_share', or a model."""
    if commission is None:
        return FractionCommission(0.0)
    if isinstance(commission, FractionCommission | PerShareCommission):
        return commission
    if isinstance(commission, str):
        text = commission.strip().lower()
        if text in ("ib", "per_share", "fixed"):
            return PerShareCommission()
        try:
            commission = float(text)
        except ValueError:
            raise BacktestError(
                f"commission: expected a fraction like 0.002 or 'ib', got {commission!r}"
            ) from None
    c = float(commission)
    if not (0.0 <= c < 0.1) or not math.isfinite(c):
        raise BacktestError(f"commission: a fraction in [0, 0.1) expected, got {c:g}")
    return FractionCommission(c)


def make_sizing(sizing: Sizing | str | None, value: float | None = None) -> Sizing:
    if isinstance(sizing, Sizing):
        return sizing
    mode = sizing or "all_in"
    if value is None:
        value = {"fixed": 100.0, "cash": 10_000.0}.get(mode, 1.0)
    try:
        return Sizing(mode, float(value))
    except StrategyError as e:
        raise BacktestError(str(e)) from None


def validate_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """The bar frame as float columns on a sorted, unique index; or a BacktestError."""
    if not isinstance(bars, pd.DataFrame) or bars.empty:
        raise BacktestError("no bars to backtest")
    cols = {c.lower(): c for c in bars.columns}
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise BacktestError(f"bars lack column(s) {', '.join(missing)}")
    out = pd.DataFrame(
        {c: bars[cols[c]].to_numpy(dtype=float) for c in REQUIRED_COLUMNS}, index=bars.index
    )
    out["volume"] = bars[cols["volume"]].to_numpy(dtype=float) if "volume" in cols else 0.0
    if not out.index.is_monotonic_increasing:
        out = out.sort_index(kind="stable")
    px = out[list(REQUIRED_COLUMNS)].to_numpy()
    if not np.isfinite(px).all() or (px <= 0).any():
        bad = int(np.flatnonzero(~(np.isfinite(px) & (px > 0)).all(axis=1))[0])
        raise BacktestError(f"bar {out.index[bad]}: prices must be finite and > 0")
    return out


def _ts_seconds(index: pd.Index) -> np.ndarray:
    if isinstance(index, pd.DatetimeIndex):
        return index.as_unit("ns").asi8 / 1e9
    return np.arange(len(index), dtype=float) * 86400.0


# --------------------------------------------------------------------------- the book


class _Book:
    """Cash, positions and the fill log of one backtest (both paths use it)."""

    __slots__ = ("cash", "cost", "fb", "fc", "fk", "fp", "fq", "fr", "insts", "plain", "pos")

    def __init__(self, cash: float):
        self.cash = cash
        self.pos: dict[str, float] = {}
        self.cost: dict[str, float] = {}  # average entry price per instrument
        self.insts: dict[str, Instrument] = {}
        self.fb: list[int] = []
        self.fk: list[str] = []
        self.fq: list[float] = []
        self.fp: list[float] = []
        self.fc: list[float] = []
        self.fr: list[str] = []
        self.plain = False  # every fill is the one symbol's, with no reason (the hot loop)

    def fill(
        self,
        i: int,
        inst: Instrument,
        qty: float,
        price: float,
        commission: float,
        reason: str = "",
    ) -> None:
        key = inst.key
        self.insts[key] = inst
        mult = inst.multiplier
        p0 = self.pos.get(key, 0.0)
        p1 = p0 + qty
        if abs(p1) < 1e-9:
            p1 = 0.0
        self.cash -= qty * price * mult + commission
        if p1 == 0.0:
            self.pos.pop(key, None)
            self.cost.pop(key, None)
        else:
            self.pos[key] = p1
            if p0 == 0.0 or (p0 > 0) != (p1 > 0):
                self.cost[key] = price
            elif abs(p1) > abs(p0):
                self.cost[key] = (self.cost[key] * abs(p0) + price * abs(qty)) / abs(p1)
        self.fb.append(i)
        self.fk.append(key)
        self.fq.append(qty)
        self.fp.append(price)
        self.fc.append(commission)
        self.fr.append(reason)


# ---------------------------------------------------------------------------- stops


@dataclass(frozen=True, slots=True)
class _Stops:
    sl_pct: float | None
    sl_abs: float | None
    tp_pct: float | None
    tp_abs: float | None
    trail_pct: float | None

    @classmethod
    def from_config(cls, risk: StrategyRiskConfig | None) -> _Stops | None:
        if risk is None:
            return None
        s = cls(
            risk.stop_loss_pct,
            risk.stop_loss_abs,
            risk.take_profit_pct,
            risk.take_profit_abs,
            risk.trailing_stop_pct,
        )
        return (
            s
            if any(v is not None for v in (s.sl_pct, s.sl_abs, s.tp_pct, s.tp_abs, s.trail_pct))
            else None
        )

    def levels(self, long: bool, entry: float, extreme: float) -> tuple[float, float]:
        """(stop, take-profit) for a position entered at ``entry`` whose best price since is
        ``extreme`` (highest high for a long, lowest low for a short). NaN: none."""
        stop = tp = math.nan
        if long:
            cands = []
            if self.sl_pct is not None:
                cands.append(entry * (1 - self.sl_pct / 100.0))
            if self.sl_abs is not None:
                cands.append(entry - self.sl_abs)
            if self.trail_pct is not None:
                cands.append(extreme * (1 - self.trail_pct / 100.0))
            if cands:
                stop = max(cands)
            tcs = []
            if self.tp_pct is not None:
                tcs.append(entry * (1 + self.tp_pct / 100.0))
            if self.tp_abs is not None:
                tcs.append(entry + self.tp_abs)
            if tcs:
                tp = min(tcs)
        else:
            cands = []
            if self.sl_pct is not None:
                cands.append(entry * (1 + self.sl_pct / 100.0))
            if self.sl_abs is not None:
                cands.append(entry + self.sl_abs)
            if self.trail_pct is not None:
                cands.append(extreme * (1 + self.trail_pct / 100.0))
            if cands:
                stop = min(cands)
            tcs = []
            if self.tp_pct is not None:
                tcs.append(entry * (1 - self.tp_pct / 100.0))
            if self.tp_abs is not None:
                tcs.append(entry - self.tp_abs)
            if tcs:
                tp = max(tcs)
        return stop, tp


# ------------------------------------------------------------------------- backtester


class CustomBacktester:
    """Backtest one strategy on one symbol's bars.

    ``commission``: a fraction of traded value (0.002), ``'ib'`` for IB per-share pricing, or a
    commission model. ``sizing``: a :class:`Sizing` or a mode name. ``risk``: stop-loss /
    take-profit rules. ``risk_gate``: pre-trade check, ``order -> reason or None``.
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        strategy: StrategyInterface,
        *,
        cash: float = 10_000.0,
        commission: float | str | CommissionModel | None = 0.0,
        sizing: Sizing | str | None = "all_in",
        symbol: str = "SYM",
        risk: StrategyRiskConfig | None = None,
        risk_gate: RiskGate | None = None,
        mode: str = "fast",
        rate: float = 0.04,
        option_vol_window: int = 20,
        progress: Progress | None = None,
    ):
        if not (cash > 0 and math.isfinite(cash)):
            raise BacktestError(f"cash must be > 0, got {cash!r}")
        if mode not in ("fast", "replay"):
            raise BacktestError(f"mode must be 'fast' or 'replay', got {mode!r}")
        self.bars = validate_bars(bars)
        self.strategy = strategy
        self.cash = float(cash)
        self.commission = make_commission(commission)
        self.sizing = make_sizing(sizing)
        self.symbol = symbol
        self.stops = _Stops.from_config(risk)
        self.risk_gate = risk_gate
        self.mode = mode
        self.rate = rate
        self.option_vol_window = option_vol_window
        self.progress = progress
        self.result: BacktestResult | None = None
        n = len(self.bars)
        need = strategy.warmup()
        if need > n:
            raise BacktestError(
                f"window longer than the data: {strategy.name or type(strategy).__name__} needs "
                f"{need} bars, the data has {n}"
            )
        b = self.bars
        self._o = b["open"].to_numpy()
        self._h = b["high"].to_numpy()
        self._l = b["low"].to_numpy()
        self._c = b["close"].to_numpy()
        self._v = b["volume"].to_numpy()
        self._ts = _ts_seconds(b.index)
        self._cf = (
            self.commission.fraction if isinstance(self.commission, FractionCommission) else 0.0
        )
        self._vol: np.ndarray | None = None
        self._order_seq = 0
        self._rejected: list[tuple[Any, str, str]] = []

    # -- public API ----------------------------------------------------------------------
    def run_backtest(self, mode: str | None = None) -> BacktestResult:
        """Run the strategy over the bars; metrics included."""
        mode = mode or self.mode
        if mode not in ("fast", "replay"):
            raise BacktestError(f"mode must be 'fast' or 'replay', got {mode!r}")
        t0 = time.perf_counter()
        self.strategy.reset()
        self._order_seq = 0
        self._rejected = []
        book = _Book(self.cash)
        signals: pd.DataFrame | None = None
        every_bar = bool(getattr(self.strategy, "execute_every_bar", False))
        try:
            if mode == "replay":
                self._bar_loop(book, None)
            else:
                signals = self.strategy.analyze(self.bars)
                if "target" not in signals or len(signals) != len(self.bars):
                    raise BacktestError(
                        f"strategy {self.strategy.strategy_id}: analyze must return a 'target' column for every bar"
                    )
                target = signals["target"].to_numpy(dtype=float)
                if every_bar:
                    self._bar_loop(book, target)
                else:
                    self._event_loop(book, target, signals)
        except (BacktestError, StrategyError):
            raise
        except Exception as e:
            raise BacktestError(
                f"strategy {self.strategy.strategy_id} raised {type(e).__name__}: {e}"
            ) from e
        result = self._result(book, signals, mode)
        result.elapsed = time.perf_counter() - t0
        self.result = result
        result.metrics = self.calculate_performance_metrics(result)
        if self.progress:
            self.progress(1.0)
        return result

    def calculate_performance_metrics(self, result: BacktestResult | None = None) -> pd.Series:
        """The metrics of ``result`` (default: the last run) as one Series; see metrics."""
        from fbterm.backtest.metrics import performance_metrics

        res = result or self.result
        if res is None:
            raise BacktestError("run_backtest() first")
        return performance_metrics(
            res.equity,
            res.trades,
            res.bars["close"],
            warmup_bar=res.warmup_bar,
            position=res.position,
            commissions=float(res.fills["commission"].sum()) if len(res.fills) else 0.0,
        )

    # -- orders and fills ----------------------------------------------------------------
    def _gate(self, order: Order) -> bool:
        if self.risk_gate is None:
            return True
        reason = self.risk_gate(order)
        if reason:
            self._rejected.append((order.created_ts, order.symbol, str(reason)))
            return False
        return True

    def _order(
        self,
        inst: Instrument,
        qty: float,
        i: int,
        otype: OrderType = OrderType.MARKET,
        stop: float | None = None,
        limit: float | None = None,
        reason: str = "",
    ) -> Order:
        self._order_seq += 1
        return Order(
            client_order_id=f"bt-{self._order_seq}",
            instrument=inst,
            side=Side.BUY if qty > 0 else Side.SELL,
            quantity=abs(qty),
            order_type=otype,
            stop_price=stop,
            limit_price=limit,
            strategy_id=self.strategy.strategy_id,
            created_ts=float(self._ts[i]),
            signal_price=float(self._o[i]),
            reason=reason,
        )

    def _update(self, inst: Instrument, i: int) -> MarketUpdate:
        if isinstance(inst, Option):
            px = self._option_price(inst, self._o[i], self._ts[i], i - 1)
            return MarketUpdate(self._ts[i], px, px, px, px)
        return MarketUpdate(self._ts[i], self._o[i], self._h[i], self._l[i], self._c[i], self._v[i])

    def _submit(self, book: _Book, sig: Any, i: int) -> None:
        """An order intent from ``execute``: gate it, then fill it against bar ``i``."""
        qty = sig.quantity if sig.side is Side.BUY else -sig.quantity
        order = self._order(
            sig.instrument, qty, i, sig.order_type, sig.stop_price, sig.limit_price, sig.reason
        )
        if not self._gate(order):
            return
        d = match_order(order, self._update(sig.instrument, i))
        if d is None or d.quantity <= 0:
            # Resting limit/stop orders are not kept across bars: the built-ins trade at market,
            # and a silent resting book would make the two paths diverge.
            self._rejected.append(
                (order.created_ts, order.symbol, "unfilled non-market order dropped")
            )
            return
        q = d.quantity if qty > 0 else -d.quantity
        book.fill(
            i,
            sig.instrument,
            q,
            d.price,
            self.commission(d.quantity, d.price, sig.instrument.multiplier),
            sig.reason,
        )

    def _stop_exit(self, book: _Book, i: int, pos: float, stop: float, tp: float) -> bool:
        """Exit ``pos`` on bar ``i`` if its stop or take-profit is touched. True if it did."""
        inst = book.insts[self.symbol]
        long = pos > 0
        if stop == stop and (self._l[i] <= stop if long else self._h[i] >= stop):
            order = self._order(inst, -pos, i, OrderType.STOP, stop=stop, reason="stop")
        elif tp == tp and (self._h[i] >= tp if long else self._l[i] <= tp):
            order = self._order(inst, -pos, i, OrderType.LIMIT, limit=tp, reason="take-profit")
        else:
            return False
        if not self._gate(order):
            return False
        d = match_order(order, self._update(inst, i))
        if d is None or d.quantity <= 0:
            return False
        book.fill(i, inst, -pos, d.price, self.commission(abs(pos), d.price), order.reason)
        self.strategy.forget_target(self.symbol)
        return True

    # -- options (covered call) ------------------------------------------------------------
    def _vol_at(self, i: int) -> float:
        if self._vol is None:
            from fbterm.strategies.covered_call import periods_per_year, realised_vol

            self._vol = realised_vol(
                self._c, self.option_vol_window, periods_per_year(self.bars.index)
            )
        return float(self._vol[i]) if i >= 0 else math.nan

    def _option_price(self, opt: Option, spot: float, ts: float, vol_bar: int) -> float:
        from fbterm.pricing import YEAR_SECONDS, bs_call, expiry_ts

        t = (expiry_ts(opt.expiry) - ts) / YEAR_SECONDS
        vol = self._vol_at(vol_bar)
        if not vol > 0:
            vol = (
                self._vol_at(int(np.nanargmax(np.isfinite(self._vol))))
                if self._vol is not None
                else 0.2
            )
        if opt.right.value == "C":
            return bs_call(spot, opt.strike, t, vol, self.rate)
        # put by parity
        return (
            bs_call(spot, opt.strike, t, vol, self.rate)
            - spot
            + opt.strike * math.exp(-self.rate * max(t, 0.0))
        )

    def _chain(self, i: int) -> Callable[[str], list[Any]]:
        from fbterm.strategies.covered_call import synthetic_chain

        def chain(symbol: str) -> list[Any]:
            return synthetic_chain(
                symbol, float(self._o[i]), float(self._ts[i]), self._vol_at(i - 1), self.rate
            )

        return chain

    def _settle_expired(self, book: _Book, i: int) -> None:
        from fbterm.pricing import expiry_ts

        for key in [
            k for k, inst in book.insts.items() if isinstance(inst, Option) and k in book.pos
        ]:
            opt = book.insts[key]
            assert isinstance(opt, Option)
            if expiry_ts(opt.expiry) <= self._ts[i]:
                spot = self._c[i - 1] if i > 0 else self._o[i]
                intrinsic = (
                    max(spot - opt.strike, 0.0)
                    if opt.right.value == "C"
                    else max(opt.strike - spot, 0.0)
                )
                book.fill(i, opt, -book.pos[key], intrinsic, 0.0, "expired")

    def _equity_at_open(self, book: _Book, i: int) -> float:
        px = self._o[i]
        eq = book.cash + book.pos.get(self.symbol, 0.0) * px
        for key, q in book.pos.items():
            inst = book.insts[key]
            if isinstance(inst, Option):
                eq += q * inst.multiplier * self._option_price(inst, px, self._ts[i], i - 1)
        return eq

    # -- the replay path (and the fast path of every-bar strategies) ------------------------
    def _bar_loop(self, book: _Book, target: np.ndarray | None) -> None:
        """One bar at a time: act on the previous bar's target at this open, fill, check
        stops, then feed the bar to ``on_bar`` (replay) or read ``target`` (fast)."""
        strat = self.strategy
        sym = self.symbol
        book.insts[sym] = Stock(sym)
        every_bar = bool(getattr(strat, "execute_every_bar", False))
        o, hi, lo, c, v, ts = self._o, self._h, self._l, self._c, self._v, self._ts
        n = len(o)
        ctx = StrategyContext(
            strategy_id=strat.strategy_id,
            symbol=sym,
            price=0.0,
            ts=0.0,
            equity=self.cash,
            position=0.0,
            sizing=self.sizing,
            commission_fraction=self._cf,
            positions=book.pos,
        )
        stops = self.stops
        pending = math.nan
        extreme = math.nan
        prog = self.progress
        tick = max(n // 50, 1)
        on_bar = strat.on_bar
        execute = strat.execute
        submit = self._submit
        for i in range(n):
            if every_bar:
                self._settle_expired(book, i)
            if pending == pending or every_bar:
                px = o[i]
                ctx.price = px
                ctx.ts = ts[i]
                ctx.position = book.pos.get(sym, 0.0)
                ctx.equity = self._equity_at_open(book, i)
                if every_bar:
                    ctx.option_chain = self._chain(i)
                sigs = execute(pending, ctx)
                for sig in sigs:
                    p_before = book.pos.get(sym, 0.0)
                    submit(book, sig, i)
                    if sig.instrument.key == sym and book.pos.get(sym, 0.0) != p_before:
                        extreme = math.nan
            if stops is not None:
                pos = book.pos.get(sym, 0.0)
                if pos:
                    entry = book.cost[sym]
                    if extreme != extreme:
                        extreme = entry
                    stop, tp = stops.levels(pos > 0, entry, extreme)
                    if self._stop_exit(book, i, pos, stop, tp):
                        extreme = math.nan
                    else:
                        extreme = max(extreme, hi[i]) if pos > 0 else min(extreme, lo[i])
            if target is None:
                pending = on_bar(Bar(sym, ts[i], o[i], hi[i], lo[i], c[i], v[i]))
            else:
                pending = target[i]
            if prog is not None and i % tick == 0:
                prog(i / n)

    # -- the fast path ----------------------------------------------------------------------
    def _event_loop(self, book: _Book, target: np.ndarray, signals: pd.DataFrame) -> None:
        """Step from one target change to the next; stops are found with numpy in between."""
        strat = self.strategy
        sym = self.symbol
        inst = Stock(sym)
        book.insts[sym] = inst
        o = self._o
        n = len(o)
        nn = np.flatnonzero(~np.isnan(target))
        if len(nn) == 0:
            return
        vals = target[nn]
        chg_mask = np.empty(len(nn), dtype=bool)
        chg_mask[0] = True
        chg_mask[1:] = vals[1:] != vals[:-1]
        reenter = bool(getattr(strat, "reenter_on_repeat", False))
        # With re-entry every non-NaN target acts (a repeat closes and re-opens).
        events = nn.tolist() if reenter else nn[chg_mask].tolist()
        stops = self.stops
        inline = (
            type(strat).execute is StrategyInterface.execute
            and self.risk_gate is None
            and not (reenter and stops is not None)
        )
        if inline and stops is None:
            self._plain_loop(book, target, [e for e in events if e + 1 < n])
            return
        sizing, cf, commission = self.sizing, self._cf, self.commission
        frac = isinstance(commission, FractionCommission)
        cash = book.cash
        pos = 0.0
        last = math.nan  # the target last acted on (NaN: none, or forgotten after a stop)
        fb, fq, fp, fc = book.fb, book.fq, book.fp, book.fc
        ctx = StrategyContext(
            strategy_id=strat.strategy_id,
            symbol=sym,
            price=0.0,
            ts=0.0,
            equity=self.cash,
            position=0.0,
            sizing=sizing,
            commission_fraction=cf,
            positions=book.pos,
        )
        ts = self._ts
        k = 0
        seg = 0  # first bar whose stop check is still to do for the current position
        n_ev = len(events)
        while True:
            e = events[k] if k < n_ev else n - 1
            f = e + 1 if k < n_ev else n  # the bar whose open acts on event e
            if f > n - 1 and k < n_ev:
                f = n  # a signal on the last bar never fills
            if stops is not None and pos and seg < f:
                j, price, reason = self._find_stop(pos, book.cost[sym], seg, f)
                if j >= 0:
                    if inline:
                        fee = abs(pos) * price * cf if frac else commission(abs(pos), price)
                        cash -= -pos * price + fee
                        fb.append(j)
                        fq.append(-pos)
                        fp.append(price)
                        fc.append(fee)
                        book.fk.append(sym)
                        book.fr.append(reason)
                        pos = 0.0
                        book.pos.pop(sym, None)
                    else:
                        book.cash = cash
                        order = self._order(
                            inst,
                            -pos,
                            j,
                            OrderType.STOP if reason == "stop" else OrderType.LIMIT,
                            stop=price if reason == "stop" else None,
                            limit=price if reason != "stop" else None,
                            reason=reason,
                        )
                        if self._gate(order):
                            book.fill(j, inst, -pos, price, commission(abs(pos), price), reason)
                        cash = book.cash
                        pos = book.pos.get(sym, 0.0)
                    if not pos:
                        last = math.nan
                        strat.forget_target(sym)
                        # After a stop the next non-NaN target acts even if it repeats.
                        r = int(np.searchsorted(nn, j))
                        if r < len(nn):
                            nxt = int(nn[r])
                            kk = k
                            while kk < n_ev and events[kk] < nxt:
                                kk += 1
                            if kk >= n_ev or events[kk] != nxt:
                                events.insert(kk, nxt)
                                n_ev += 1
                            k = kk
                        else:
                            k = n_ev
                        continue
            if k >= n_ev or f >= n:
                break
            t = target[e]
            k += 1
            if inline:
                if t == last:
                    continue
                last = t
                px = o[f]
                qty = target_quantity(
                    t, px, cash + pos * px, sizing, commission_fraction=cf, position=pos
                )
                delta = qty - pos
                if abs(delta) < 1e-9:
                    continue
                fee = abs(delta) * px * cf if frac else commission(abs(delta), px)
                cash -= delta * px + fee
                pos = qty if abs(qty) >= 1e-9 else 0.0
                fb.append(f)
                fq.append(delta)
                fp.append(px)
                fc.append(fee)
                book.fk.append(sym)
                book.fr.append("")
                if stops is not None:
                    if pos:
                        p0 = book.pos.get(sym, 0.0)
                        if p0 == 0.0 or (p0 > 0) != (pos > 0):
                            book.cost[sym] = px
                        elif abs(pos) > abs(p0):
                            book.cost[sym] = (book.cost[sym] * abs(p0) + px * abs(delta)) / abs(pos)
                        book.pos[sym] = pos
                    else:
                        book.pos.pop(sym, None)
                    seg = f
            else:
                book.cash = cash
                ctx.price = o[f]
                ctx.ts = ts[f]
                ctx.position = pos
                ctx.equity = cash + pos * o[f]
                p_before = pos
                for sig in strat.execute(signals.iloc[e : e + 1], ctx):
                    self._submit(book, sig, f)
                cash = book.cash
                pos = book.pos.get(sym, 0.0)
                if pos != p_before:
                    seg = f
        if inline:
            book.cash = cash
            if pos:
                book.pos[sym] = pos

    def _plain_loop(self, book: _Book, target: np.ndarray, events: list[int]) -> None:
        """The hot loop: base ``execute`` semantics and sizing inlined, no stops, no gate.

        The arithmetic repeats :func:`target_quantity` operation for operation, so the fills
        are bit-identical to the replay path's (a test holds both to it)."""
        sym = self.symbol
        o = self._o
        mode, value = self.sizing.mode, self.sizing.value
        cf = self._cf
        commission = self.commission
        frac = isinstance(commission, FractionCommission)
        cash, pos, last = book.cash, 0.0, math.nan
        fb: list[int] = []
        fq: list[float] = []
        fp: list[float] = []
        fc: list[float] = []
        floor, copysign = math.floor, math.copysign
        # Bound appends held in locals: the loop runs once per signal change (tens of
        # thousands of times on a million bars) and attribute lookups are a real share of it.
        fb_add, fq_add, fp_add, fc_add = fb.append, fq.append, fp.append, fc.append
        all_in, fraction, cash_mode = mode == "all_in", mode == "fraction", mode == "cash"
        keep = 1 - 1e-10
        reenter = bool(getattr(self.strategy, "reenter_on_repeat", False))
        tv = target[events].tolist()
        pv = o[np.asarray(events, dtype=np.int64) + 1].tolist() if events else []
        for e, t, px in zip(events, tv, pv, strict=True):
            if t == last:
                if not (reenter and t):
                    continue
                # Re-entry: close at this open, then size afresh on what is left (as
                # StrategyInterface._reenter does, operation for operation).
                eq = cash + pos * px - abs(pos) * px * cf
                if pos:
                    fee = abs(pos) * px * cf if frac else commission(abs(pos), px)
                    cash -= -pos * px + fee
                    fb_add(e + 1)
                    fq_add(-pos)
                    fp_add(px)
                    fc_add(fee)
                    pos = 0.0
                if all_in:
                    units = max(eq, 0.0) * keep * abs(t) / (px * (1 + cf))
                elif fraction:
                    units = max(eq, 0.0) * value * abs(t) / px
                elif cash_mode:
                    units = value * abs(t) / px
                else:
                    units = value * abs(t)
                qty = copysign(float(floor(units + 1e-9)), t)
                if qty:
                    fee = abs(qty) * px * cf if frac else commission(abs(qty), px)
                    cash -= qty * px + fee
                    pos = qty
                    fb_add(e + 1)
                    fq_add(qty)
                    fp_add(px)
                    fc_add(fee)
                continue
            last = t
            if not t or px <= 0:
                qty = 0.0
            else:
                if all_in:
                    eq = cash + pos * px
                    if pos and (pos > 0) != (t > 0):
                        eq -= abs(pos) * px * cf
                    units = max(eq, 0.0) * keep * abs(t) / (px * (1 + cf))
                elif fraction:
                    units = max(cash + pos * px, 0.0) * value * abs(t) / px
                elif cash_mode:
                    units = value * abs(t) / px
                else:
                    units = value * abs(t)
                qty = copysign(float(floor(units + 1e-9)), t)
            delta = qty - pos
            if abs(delta) < 1e-9:
                continue
            fee = abs(delta) * px * cf if frac else commission(abs(delta), px)
            cash -= delta * px + fee
            pos = qty
            fb_add(e + 1)
            fq_add(delta)
            fp_add(px)
            fc_add(fee)
        book.cash = cash
        book.fb, book.fq, book.fp, book.fc = fb, fq, fp, fc
        book.fk = [sym] * len(fb)
        book.fr = [""] * len(fb)
        book.plain = True
        if pos:
            book.pos[sym] = pos
            book.cost[sym] = fp[-1]

    def _find_stop(self, pos: float, entry: float, start: int, end: int) -> tuple[int, float, str]:
        """First bar in [start, end) where the stop or take-profit of ``pos`` triggers, with
        its fill price: the same rules as the replay path, vectorised over the segment."""
        stops = self.stops
        assert stops is not None
        long = pos > 0
        hi, lo, o = self._h[start:end], self._l[start:end], self._o[start:end]
        m = len(hi)
        if m == 0:
            return -1, 0.0, ""
        if stops.trail_pct is not None:
            ext = np.empty(m)
            ext[0] = entry
            if m > 1:
                if long:
                    ext[1:] = np.maximum(np.maximum.accumulate(hi[:-1]), entry)
                else:
                    ext[1:] = np.minimum(np.minimum.accumulate(lo[:-1]), entry)
        else:
            ext = np.full(m, entry)
        # Levels per bar, computed by the same scalar rule as the replay path (exact).
        stop = np.empty(m)
        tp = np.empty(m)
        if stops.trail_pct is None:
            s0, t0 = stops.levels(long, entry, entry)
            stop.fill(s0)
            tp.fill(t0)
        else:
            uniq, inv = np.unique(ext, return_inverse=True)
            lv = np.array([stops.levels(long, entry, float(x)) for x in uniq]).reshape(-1, 2)
            stop = lv[inv, 0]
            tp = lv[inv, 1]
        with np.errstate(invalid="ignore"):
            hit_s = (lo <= stop) if long else (hi >= stop)
            hit_t = (hi >= tp) if long else (lo <= tp)
        hit = hit_s | hit_t
        if not hit.any():
            return -1, 0.0, ""
        j = int(np.argmax(hit))
        if hit_s[j]:
            s = stop[j]
            gapped = o[j] <= s if long else o[j] >= s
            return start + j, float(o[j] if gapped else s), "stop"
        t = tp[j]
        beyond = o[j] >= t if long else o[j] <= t
        return start + j, float(o[j] if beyond else t), "take-profit"

    # -- building the result -------------------------------------------------------------
    def _result(self, book: _Book, signals: pd.DataFrame | None, mode: str) -> BacktestResult:
        idx = self.bars.index
        n = len(idx)
        fb = np.asarray(book.fb, dtype=np.int64)
        fq = np.asarray(book.fq, dtype=float)
        fp = np.asarray(book.fp, dtype=float)
        fc = np.asarray(book.fc, dtype=float)
        sym = self.symbol
        m = len(fb)
        if book.plain or set(book.fk) <= {sym}:
            # One instrument: skip per-fill Python work (1M bars can mean 100k fills).
            keys: Any = pd.Categorical.from_codes(np.zeros(m, dtype=np.int8), [sym])
            mults = np.ones(m)
            is_sym = np.ones(m, dtype=bool)
        else:
            keys = np.asarray(book.fk, dtype=object)
            mults = np.array([book.insts[k].multiplier for k in book.fk], dtype=float)
            is_sym = keys == sym
        reasons: Any = (
            pd.Categorical.from_codes(np.zeros(m, dtype=np.int8), [""])
            if book.plain
            else pd.Categorical(book.fr)
        )
        flows = np.bincount(fb, weights=fq * fp * mults + fc, minlength=n) if m else np.zeros(n)
        cash = self.cash - np.cumsum(flows)
        position = (
            np.cumsum(np.bincount(fb[is_sym], weights=fq[is_sym], minlength=n))
            if len(fb)
            else np.zeros(n)
        )
        position[np.abs(position) < 1e-9] = 0.0
        equity = cash + position * self._c
        for key in (set(book.insts) - {sym}) if not book.plain else ():
            inst = book.insts[key]
            sel = keys == key
            held = np.cumsum(np.bincount(fb[sel], weights=fq[sel], minlength=n))
            for i in np.flatnonzero(np.abs(held) > 1e-9):
                equity[i] += (
                    held[i]
                    * inst.multiplier
                    * self._option_price(inst, self._c[i], self._ts[i], int(i))
                )
        fills = pd.DataFrame(
            {
                "bar": fb,
                "time": idx[fb] if len(fb) else pd.Index([], dtype=idx.dtype),
                "instrument": keys,
                "quantity": fq,
                "price": fp,
                "commission": fc,
                "reason": reasons,
            }
        )
        trades = trades_from_fills(fills, idx, {k: i.multiplier for k, i in book.insts.items()})
        sig = signals
        if sig is None:
            sig = self.strategy.analyze(
                self.bars.iloc[: min(n, max(self.strategy.warmup() * 3, 64))]
            )
        warm = _first_defined(sig)
        rejected = pd.DataFrame(self._rejected, columns=["ts", "instrument", "reason"])
        return BacktestResult(
            equity=pd.Series(equity, index=idx, name="equity"),
            trades=trades,
            fills=fills,
            bars=self.bars,
            signals=signals,
            rejected=rejected,
            position=pd.Series(position, index=idx, name="position"),
            strategy=self.strategy.name or type(self.strategy).__name__,
            params=dict(self.strategy.p),
            mode=mode,
            cash=self.cash,
            warmup_bar=warm,
        )


def _first_defined(signals: pd.DataFrame) -> int:
    """First bar where every indicator column of ``signals`` is defined (0 if none are)."""
    cols = [c for c in signals.columns if c != "target"]
    if not cols:
        return 0
    defined = np.ones(len(signals), dtype=bool)
    for col in cols:
        defined &= ~np.isnan(signals[col].to_numpy(dtype=float))
    return int(np.argmax(defined)) if defined.any() else 0


TRADE_COLUMNS = [
    "instrument",
    "size",
    "entry_bar",
    "exit_bar",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "pnl",
    "return_pct",
    "commission",
    "duration",
]


def trades_from_fills(
    fills: pd.DataFrame, index: pd.Index, multipliers: dict[str, int]
) -> pd.DataFrame:
    """Closed round trips from fills: a trade opens when a position leaves zero (or reverses)
    and closes when it returns to zero or reverses; a partial reduction closes that part.
    Commission of a fill that both closes and opens is split by quantity. return_pct follows
    backtesting.py: the price move in % of entry, less the trade's commissions in % of entry
    value. A position still open at the end is not a trade."""
    parts: list[pd.DataFrame] = []
    if len(fills):
        for key, grp in fills.groupby("instrument", sort=False, observed=True):
            mult = float(multipliers.get(str(key), 1))
            q = grp["quantity"].to_numpy()
            p1 = np.cumsum(q)
            p1[np.abs(p1) < 1e-9] = 0.0
            p0 = np.r_[0.0, p1[:-1]]
            if np.all((p0 == 0) | (p1 == 0) | ((p0 > 0) != (p1 > 0))):
                parts.append(_trades_vectorised(str(key), grp, p0, p1, mult))
            else:
                parts.append(pd.DataFrame(_trades_walk(str(key), grp, mult), columns=_RAW_COLUMNS))
    parts = [p for p in parts if len(p)]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_RAW_COLUMNS)
    if len(df):
        df = df.sort_values(["exit_bar", "entry_bar"], kind="stable").reset_index(drop=True)
        eb = df["entry_bar"].to_numpy(dtype=np.int64)
        xb = df["exit_bar"].to_numpy(dtype=np.int64)
        df["entry_time"] = index[eb]
        df["exit_time"] = index[xb]
    else:
        df["entry_time"] = pd.Series([], dtype=index.dtype)
        df["exit_time"] = pd.Series([], dtype=index.dtype)
    df["duration"] = df["exit_time"] - df["entry_time"] if len(df) else pd.Series([], dtype=object)
    return df[TRADE_COLUMNS]


_RAW_COLUMNS = TRADE_COLUMNS[:4] + TRADE_COLUMNS[6:11]


def _trades_vectorised(
    key: str, grp: pd.DataFrame, p0: np.ndarray, p1: np.ndarray, mult: float
) -> pd.DataFrame:
    """Fast case: every fill opens from flat, closes to flat, or reverses."""
    bar = grp["bar"].to_numpy()
    px = grp["price"].to_numpy()
    com = grp["commission"].to_numpy()
    q = np.abs(grp["quantity"].to_numpy())
    opens = np.flatnonzero(p1 != 0)
    closes = np.flatnonzero(p0 != 0)
    m = min(len(opens), len(closes))
    if m == 0:
        return pd.DataFrame(columns=_RAW_COLUMNS)
    oi, ci = opens[:m], closes[:m]
    size = p1[oi]
    with np.errstate(invalid="ignore", divide="ignore"):
        c_in = com[oi] * np.abs(p1[oi]) / q[oi]
        c_out = com[ci] * np.abs(p0[ci]) / q[ci]
    entry, exit_ = px[oi], px[ci]
    comm = c_in + c_out
    pnl = size * (exit_ - entry) * mult - comm
    ret = np.sign(size) * (exit_ / entry - 1) - comm / (np.abs(size) * entry * mult)
    return pd.DataFrame(
        {
            "instrument": pd.Categorical.from_codes(np.zeros(m, dtype=np.int8), [key]),
            "size": size,
            "entry_bar": bar[oi],
            "exit_bar": bar[ci],
            "entry_price": entry,
            "exit_price": exit_,
            "pnl": pnl,
            "return_pct": ret,
            "commission": comm,
        }
    )


def _trades_walk(key: str, grp: pd.DataFrame, mult: float) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    size = entry = ecomm = 0.0
    ebar = 0
    for b, q, p, c in zip(
        grp["bar"], grp["quantity"], grp["price"], grp["commission"], strict=True
    ):
        rem = q
        if size and (size > 0) != (q > 0):
            closed = min(abs(size), abs(q))
            part_c = c * closed / abs(q)
            share = closed / abs(size)
            tc = ecomm * share + part_c
            sz = math.copysign(closed, size)
            pnl = sz * (p - entry) * mult - tc
            ret = math.copysign(1, sz) * (p / entry - 1) - tc / (closed * entry * mult)
            rows.append((key, sz, ebar, int(b), entry, p, pnl, ret, tc))
            ecomm -= ecomm * share
            size -= sz
            if abs(size) < 1e-9:
                size = 0.0
            rem = q + sz
            c -= part_c
        if abs(rem) > 1e-9:
            if not size:
                entry, ebar, ecomm = p, int(b), c
            else:
                entry = (entry * abs(size) + p * abs(rem)) / (abs(size) + abs(rem))
                ecomm += c
            size += rem
    return rows
