"""The backtest's conventions and every statistic's definition, in words, in one place.

``fbterm backtest --help`` prints :data:`HELP`; :func:`statistics_table` renders
:data:`STATISTICS` as the README's table. Text only (no imports): the CLI builds its parser
from it and must stay quick to start.
"""

from __future__ import annotations

# (key, fbterm's definition, backtesting.py 0.6.6's where it differs — and why ours differs)
STATISTICS: tuple[tuple[str, str, str], ...] = (
    ("exposure_pct", "share of bars with a position at the close, or a trade exiting on it; "
     "the trade still open at the end counts", "closed trades' bars only: an open position "
     "is exposure too"),
    ("commissions", "every fill's commission: what the account paid, the entry of a trade "
     "still open at the end included", "closed trades only: the equity has paid the open "
     "trade's entry, so the total should show it"),
    ("commissions_open", "the part of commissions that is the open trade's entry", "(none in "
     "backtesting.py)"),
    ("return_pct", "final / initial equity - 1", "same"),
    ("buy_hold_return_pct", "last close / close of the first bar after the strategy's "
     "warm-up - 1", "same"),
    ("return_ann_pct", "(1 + geometric mean period return) ^ periods a year - 1", "same "
     "formula; intraday days are calendar dates of the file's clock, not exchange sessions"),
    ("volatility_ann_pct", "std (ddof 1) of period returns x sqrt(periods a year)",
     "volatility of compounded returns, sqrt((var + (1+g)^2)^A - (1+g)^(2A)): ours is the "
     "textbook (and empyrical's) figure"),
    ("cagr_pct", "(final / initial equity) ^ (1 / years) - 1, years of 365.25 days; "
     "undefined when equity ends at 0", "same, but -100 when equity ends at 0"),
    ("sharpe", "mean / std (ddof 1) of period returns x sqrt(periods a year), risk-free 0",
     "annualised geometric return / annualised volatility: ours is the standard Sharpe "
     "(equal to empyrical's to 10 digits) and the one the live metrics show"),
    ("sortino", "mean period return / downside deviation x sqrt(periods a year); downside "
     "deviation = sqrt(mean(min(r, 0)^2)) over all returns", "annualised geometric return / "
     "(downside deviation x sqrt(periods a year))"),
    ("calmar", "annualised return / max drawdown", "same"),
    ("alpha_pct", "return - beta x buy & hold return, risk-free 0", "same, NaN once equity "
     "has touched 0 (a log of 0)"),
    ("beta", "cov / var of the equity's and the close's simple returns over the periods "
     "Sharpe uses", "log returns of every bar: NaN once equity has touched 0"),
    ("max_drawdown_pct", "largest fall below the running peak of equity", "same"),
    ("avg_drawdown_pct", "mean depth of the drawdown episodes (peak to recovery or the end)",
     "same"),
    ("max_drawdown_duration", "peak to recovery (or the end), on the wall clock of "
     "--timezone, rounded to whole bars", "rounded up to the bar period's unit (a day for "
     "daily bars)"),
    ("trades", "closed round trips: a position from flat (or a reversal) back to flat (or "
     "the next reversal); a partial reduction closes that part; the open one is not counted",
     "same"),
    ("win_rate_pct", "share of closed trades with P&L > 0", "same"),
    ("best_trade_pct", "best closed trade return: price move in % of entry less the "
     "trade's commissions in % of entry value", "same"),
    ("avg_trade_pct", "geometric mean of closed trade returns", "same"),
    ("max_trade_duration", "entry to exit on the wall clock of --timezone (daylight saving "
     "adds or removes no hour), rounded to whole bars", "rounded up to the bar period's unit"),
    ("profit_factor", "gross profit / gross loss of closed trades, in money", "sum of "
     "winning trade returns / sum of losing ones: returns of different sizes do not add up "
     "to what the account made"),
    ("expectancy", "mean P&L per closed trade, money", "(none in backtesting.py)"),
    ("expectancy_pct", "mean closed trade return", "same"),
    ("sqn", "sqrt(trades) x mean P&L / std P&L (ddof 1)", "same"),
    ("kelly", "W - (1 - W) / (mean win / mean loss), from closed trades' P&L", "same"),
)  # fmt: skip

HELP = """\
conventions (the README's "Backtesting conventions and metrics" has the full table):
  fills     a signal at bar t fills at bar t+1's open. A stop-loss or take-profit rests at
            its level: it fills there, or at the bar's open when the bar opens beyond it;
            a bar touching both exits at the stop. Checked from the entry bar on.
  costs     --commission on every fill, entry and exit: a fraction of value (0.002) or
            'ib' (IB per share: 0.005, minimum 1, at most 1% of value). "Commissions"
            includes the entry of a trade still open at the end, shown on its own row.
  sizing    all_in: every whole unit the equity buys after commission; fraction: that
            share of equity after commission; fixed: units; cash: money. Reversals size on
            what is left after closing. An order adding more than the equity buys is cut
            to the part that closes (a cash account, as backtesting.py).
  margin    the first close at which equity is 0 or less closes every position there;
            equity is 0 from then on (backtesting.py's rule; the paper venue liquidates by
            the same rule at its maintenance margin).
  stops     --stop-loss 5 or 5% (percent of entry), 2.5pt (price points per unit), $300
            (loss on the position); --take-profit alike; --trailing-stop 3% or 1.5pt from
            the best price since entry.
  time      times without a zone are wall-clock times of --timezone (default: the config's
            market.timezone); a daylight-saving gap moves forward, a repeated hour reads
            first occurrence first (said once); times with an offset keep it.
  returns   bars of a day or more are their own periods (252 a year, 365 with weekends,
            52 weekly, 12 monthly); intraday bars use the last equity of each session of
            --calendar (default XNYS; 24/7 for round-the-clock markets).
  stats     Sharpe = mean / std of those returns x sqrt(periods a year), risk-free 0;
            Sortino uses the downside deviation; volatility = std x sqrt(periods);
            profit factor in money; exposure includes the open trade; durations on the
            wall clock of --timezone, rounded to whole bars. --stats backtesting prints
            backtesting.py 0.6.6's definitions instead (geometric Sharpe, profit factor on
            returns, exposure and commissions of closed trades only, durations rounded up).
"""


def statistics_table() -> str:
    """:data:`STATISTICS` as a markdown table."""
    rows = ["| key | fbterm (default) | backtesting.py (`--stats backtesting`), and why ours |"]
    rows.append("|---|---|---|")
    rows += [f"| `{k}` | {ours} | {theirs} |" for k, ours, theirs in STATISTICS]
    return "\n".join(rows)
