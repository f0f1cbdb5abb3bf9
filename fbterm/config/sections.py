"""The config's sections: frozen dataclasses whose fields carry their own constraints.

A field's ``metadata`` holds what :mod:`fbterm.config.parse` checks (``gt``, ``ge``, ``lt``,
``le``, ``choices``, ``no_limit``, ``path``, ``help``, the TOML key in ``toml``); the bounds below
are the sizes no account, price or limit can reach. :class:`Config` also resolves the files and
folders fbterm uses (:func:`user_dir`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config problem, already phrased for the operator: ``file: key.path: reason``."""


def _f(default: Any = dataclasses.MISSING, *, factory: Any = None, **meta: Any) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# Bounds for amounts no account, price or limit can reach: a value beyond them is a typo.
MONEY_MAX = 1e12
PRICE_MAX = 1e7
SECONDS_MAX = 7 * 86_400.0
NO_LIMIT = "none"  # how the file says "no limit" for a limit marked ``no_limit=True``


# ------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class PaperBrokerConfig:
    cash: float = _f(1_000_000.0, gt=0, le=MONEY_MAX, help="starting cash of the paper account")
    commission: str = _f("per_share", choices=("per_share", "percent"))
    commission_per_share: float = _f(0.005, ge=0, le=PRICE_MAX)
    commission_minimum: float = _f(1.0, ge=0, le=MONEY_MAX)
    commission_max_fraction: float = _f(0.01, ge=0, le=1)
    commission_per_contract: float = _f(0.65, ge=0, le=PRICE_MAX)
    commission_fraction: float = _f(0.0, ge=0, lt=1, help="percent mode: fraction of value")
    participation: float = _f(0.5, gt=0, le=1, help="max share of an update's volume per fill")
    leverage: float = _f(2.0, ge=1, le=10, help="buying power = equity x leverage")
    maintenance_margin: float = _f(
        0.25, ge=0, lt=1, help="positions are liquidated when equity <= this x gross value"
    )
    account: str = _f("PAPER")


@dataclass(frozen=True)
class IBConfig:
    host: str = _f("127.0.0.1")
    port: int = _f(4002, gt=0, le=65535)
    client_id: int = _f(17, ge=0)
    account: str = _f("", help="empty: the first managed account")
    read_only: bool = _f(False)
    connect_timeout: float = _f(10.0, gt=0, le=SECONDS_MAX)
    request_timeout: float = _f(30.0, gt=0, le=SECONDS_MAX)
    reconnect_initial_delay: float = _f(1.0, gt=0, le=SECONDS_MAX)
    reconnect_max_delay: float = _f(60.0, gt=0, le=SECONDS_MAX)
    max_messages_per_second: float = _f(45.0, gt=0, le=50)
    market_data_type: int = _f(1, ge=1, le=4, help="1 live, 2 frozen, 3 delayed, 4 delayed-frozen")
    # Connection loss, reconciliation, history pacing (README: Interactive Brokers).
    on_connection_lost: str = _f("reduce", choices=("reduce", "halt"), help="while IB is down")
    resume_on_restore: bool = _f(True, help="ACTIVE again once IB is back and re-synced")
    reconcile_interval: float = _f(60.0, ge=0, le=SECONDS_MAX, help="s; 0: start/reconnects")
    pacing_retry_delay: float = _f(15.0, gt=0, le=SECONDS_MAX, help="first wait on IB 162/366")
    pacing_max_retries: int = _f(6, ge=0, le=20, help="then a symbol warms on live bars")
    feed_hours: str = _f("exchange", choices=("exchange", "always"), help="when silence is stale")
    delayed_fallback: bool = _f(
        True, help="no market data subscription (IB 354/10167): switch to delayed data"
    )


@dataclass(frozen=True)
class BrokerConfig:
    kind: str = _f("paper", choices=("paper", "ib"))
    read_only: bool = _f(False, help="refuse every new order, modification and cancel (any venue)")
    paper: PaperBrokerConfig = _f(factory=PaperBrokerConfig)
    ib: IBConfig = _f(factory=IBConfig)


@dataclass(frozen=True)
class SimulatedMarketConfig:
    seed: int = _f(7)
    ticks_per_second: float = _f(8.0, gt=0, le=100_000, help="updates per symbol per second")
    volatility: float = _f(0.35, gt=0, le=5, help="annualised, calm regime")
    high_volatility: float = _f(0.9, gt=0, le=10, help="annualised, stressed regime")
    # Per tick: at 8 ticks a second and 20x, 1e-4 is a regime change or a jump about once a
    # market day (every ~20 wall minutes); 0.002 and 0.0005 flipped the volatility regime
    # every ~20 market minutes and jumped 2% every ~80, swinging option marks by multiples.
    regime_switch_prob: float = _f(0.0001, ge=0, le=1, help="chance of a regime change per tick")
    jump_intensity: float = _f(0.0001, ge=0, le=1, help="chance of a jump per tick")
    jump_std: float = _f(0.02, ge=0, le=1)
    spread_bps: float = _f(2.0, ge=0, le=1000)
    daily_volume: float = _f(
        20_000_000.0, gt=0, le=MONEY_MAX, help="shares a symbol trades in a session"
    )
    time_scale: float = _f(20.0, gt=0, le=100_000, help="simulated seconds per real second")
    risk_free_rate: float = _f(0.04, ge=0, le=1)
    prices: dict[str, float] = _f(
        factory=lambda: {"AAPL": 190.0, "MSFT": 420.0, "SPY": 560.0, "NVDA": 130.0},
        gt=0,
        le=PRICE_MAX,
        help="starting prices; others start at 100",
    )


@dataclass(frozen=True)
class CSVReplayConfig:
    path: str = _f("", path=True)
    speed: float = _f(
        0.0, ge=0, le=1e6, help="0: as fast as possible; 1: real time; 60: a minute a second"
    )


@dataclass(frozen=True)
class MarketConfig:
    source: str = _f("simulated", choices=("simulated", "csv", "ib"))
    symbols: list[str] = _f(factory=lambda: ["AAPL", "MSFT", "SPY", "NVDA"])
    timezone: str = _f("America/New_York", help="zone of timestamps that carry none")
    calendar: str = _f("XNYS", help="exchange calendar (exchange-calendars name): trading days")
    bar_seconds: float = _f(
        5.0, ge=0.01, le=86_400, help="bar size the engine builds from ticks for strategies"
    )
    history_bars: int = _f(500, gt=10, le=1_000_000, help="bars kept per symbol for strategies")
    stale_after: float = _f(
        10.0, gt=0, le=SECONDS_MAX, help="seconds without an update before a feed is stale"
    )
    simulated: SimulatedMarketConfig = _f(factory=SimulatedMarketConfig)
    csv: CSVReplayConfig = _f(factory=CSVReplayConfig)


@dataclass(frozen=True)
class StrategyRiskConfig:
    """Exits of one strategy's positions; each key names its unit (see fbterm.risk.stops):
    ``_pct`` percent of the entry price, ``_points`` price points per unit held, ``_money``
    P&L of the whole position in account currency."""

    stop_loss_pct: float | None = _f(None, gt=0, lt=100, help="percent below entry (long)")
    stop_loss_points: float | None = _f(
        None, gt=0, le=MONEY_MAX, help="price points per unit from entry"
    )
    stop_loss_money: float | None = _f(
        None, gt=0, le=MONEY_MAX, help="loss of the whole position, money"
    )
    take_profit_pct: float | None = _f(None, gt=0, le=1e6, help="percent above entry (long)")
    take_profit_points: float | None = _f(
        None, gt=0, le=MONEY_MAX, help="price points per unit from entry"
    )
    take_profit_money: float | None = _f(
        None, gt=0, le=MONEY_MAX, help="profit of the whole position, money"
    )
    trailing_stop_pct: float | None = _f(None, gt=0, lt=100, help="percent from the best price")
    trailing_stop_points: float | None = _f(
        None, gt=0, le=MONEY_MAX, help="price points from the best price"
    )


# Keys that once meant one thing live and another in backtests: refused, naming what to write.
RETIRED_KEYS: dict[str, str] = {
    "stop_loss_abs": "it meant money live but price points in backtests; write "
    "stop_loss_money (loss of the whole position) or stop_loss_points (price distance per unit)",
    "take_profit_abs": "it meant money live but price points in backtests; write "
    "take_profit_money (profit of the whole position) or take_profit_points (price distance "
    "per unit)",
}


@dataclass(frozen=True)
class StrategyConfig:
    name: str = _f(dataclasses.MISSING)
    cls: str = _f(dataclasses.MISSING, toml="class", help="built-in name or package.module:Class")
    symbols: list[str] = _f(factory=list)
    capital: float = _f(100_000.0, gt=0, le=MONEY_MAX)
    enabled: bool = _f(True)
    sizing: str = _f("fraction", choices=("fixed", "cash", "fraction", "all_in"))
    params: dict[str, Any] = _f(factory=dict)
    risk: StrategyRiskConfig = _f(factory=StrategyRiskConfig)


@dataclass(frozen=True)
class RiskConfig:
    max_order_value: float = _f(400_000.0, gt=0, le=MONEY_MAX, no_limit=True)
    max_position_value: float = _f(
        500_000.0, gt=0, le=MONEY_MAX, no_limit=True, help="per symbol, whole account"
    )
    max_position_qty: float = _f(
        100_000.0, gt=0, le=MONEY_MAX, no_limit=True, help="per symbol, whole account"
    )
    max_strategy_position_value: float = _f(
        300_000.0, gt=0, le=MONEY_MAX, no_limit=True, help="per symbol, per strategy"
    )
    max_gross_exposure: float = _f(2_000_000.0, gt=0, le=MONEY_MAX, no_limit=True)
    price_collar_pct: float = _f(5.0, gt=0, le=100, help="limit/stop too far from last price")
    max_orders_per_second: float = _f(20.0, gt=0, le=1e6, no_limit=True)
    max_drawdown_pct: float = _f(10.0, gt=0, le=100)
    daily_loss_limit: float = _f(50_000.0, gt=0, le=MONEY_MAX, no_limit=True)
    cancel_orders_on_halt: bool = _f(True)
    warn_fraction: float = _f(0.8, gt=0, lt=1, help="gauges turn amber at this share of a limit")
    max_portfolio_delta: float = _f(
        0.0, ge=0, help="dollar delta (delta x underlying price), whole account; 0: no limit"
    )
    max_portfolio_vega: float = _f(
        0.0, ge=0, help="money per volatility point, whole account; 0: no limit"
    )
    max_margin_pct: float = _f(
        0.0,
        ge=0,
        le=100,
        help="initial margin after an order, % of equity with loan (IB what-if); 0: no limit",
    )


@dataclass(frozen=True)
class JournalConfig:
    path: str = _f("", path=True, help="empty: <user data dir>/fbterm/journal.sqlite")
    synchronous: str = _f("NORMAL", choices=("OFF", "NORMAL", "FULL"))


@dataclass(frozen=True)
class DataConfig:
    dir: str = _f("", path=True, help="empty: <user data dir>/fbterm/data")
    on_bad_rows: str = _f("error", choices=("error", "drop", "repair"))
    gap_policy: str = _f("keep", choices=("keep", "drop", "ffill"))
    outlier_sigma: float = _f(8.0, gt=0, le=1e6)


@dataclass(frozen=True)
class EmailAlertConfig:
    enabled: bool = _f(False)
    host: str = _f("localhost")
    port: int = _f(587, gt=0, le=65535)
    security: str = _f("starttls", choices=("none", "starttls", "tls"))
    username: str = _f("")
    password_env: str = _f("FBTERM_SMTP_PASSWORD", help="name of the env var with the password")
    sender: str = _f("fbterm@localhost")
    recipients: list[str] = _f(factory=list)
    timeout: float = _f(10.0, gt=0, le=SECONDS_MAX)


@dataclass(frozen=True)
class SMSAlertConfig:
    enabled: bool = _f(False)
    provider: str = _f("twilio", choices=("twilio", "webhook"))
    url: str = _f("", help="API base URL (Twilio) or the webhook URL")
    account_sid: str = _f("")
    token_env: str = _f("FBTERM_SMS_TOKEN")
    sender: str = _f("")
    recipients: list[str] = _f(factory=list)
    timeout: float = _f(10.0, gt=0, le=SECONDS_MAX)


@dataclass(frozen=True)
class AlertsConfig:
    min_severity: str = _f("warning", choices=("info", "warning", "error", "critical"))
    rate_limit_per_minute: int = _f(10, gt=0, le=100_000)
    dedup_seconds: float = _f(300.0, ge=0, le=SECONDS_MAX)
    retry_max_attempts: int = _f(20, gt=0, le=100_000)
    retry_initial_delay: float = _f(5.0, gt=0, le=SECONDS_MAX)
    email: EmailAlertConfig = _f(factory=EmailAlertConfig)
    sms: SMSAlertConfig = _f(factory=SMSAlertConfig)


@dataclass(frozen=True)
class LogConfig:
    path: str = _f("", path=True, help="empty: <user data dir>/fbterm/activity.jsonl")
    max_bytes: int = _f(10_000_000, gt=1000, le=10**12)
    backups: int = _f(5, ge=0, le=1000)
    level: str = _f("info", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class MetricsConfig:
    kelly_cap: float = _f(0.25, gt=0, le=1, help="max half-Kelly fraction per strategy")
    kelly_min_observations: int = _f(30, gt=1, le=1_000_000)
    rebalance_interval: float = _f(0.0, ge=0, le=365 * 86_400, help="seconds; 0: only on command")
    rolling_window: int = _f(100, gt=1, le=1_000_000)
    report_dir: str = _f("", path=True, help="empty: the data dir")


@dataclass(frozen=True)
class UIConfig:
    theme: str = _f("dark")
    refresh_hz: float = _f(10.0, gt=0, le=60)
    compact: str = _f("auto", choices=("auto", "on", "off"))
    keys: dict[str, str] = _f(factory=dict, help="action = key overrides")
    confirm: dict[str, bool] = _f(factory=dict, help="action = false to skip its confirmation")
    flatten_order_type: str = _f("market", choices=("market", "limit"))
    flatten_limit_offset_pct: float = _f(0.1, ge=0, le=10)
    ascii: str = _f(
        "auto",
        choices=("auto", "on", "off"),
        help="monochrome ASCII drawing; auto: on when TERM=dumb or NO_COLOR is set",
    )


@dataclass(frozen=True)
class ControlConfig:
    socket: str = _f(
        "", path=True, help="empty: <fbterm's folder>/run/control.sock (a private folder)"
    )


@dataclass(frozen=True)
class Config:
    broker: BrokerConfig = _f(factory=BrokerConfig)
    market: MarketConfig = _f(factory=MarketConfig)
    strategies: list[StrategyConfig] = _f(factory=list)
    risk: RiskConfig = _f(factory=RiskConfig)
    journal: JournalConfig = _f(factory=JournalConfig)
    data: DataConfig = _f(factory=DataConfig)
    alerts: AlertsConfig = _f(factory=AlertsConfig)
    log: LogConfig = _f(factory=LogConfig)
    metrics: MetricsConfig = _f(factory=MetricsConfig)
    ui: UIConfig = _f(factory=UIConfig)
    control: ControlConfig = _f(factory=ControlConfig)
    source: str = field(default="<defaults>", compare=False, metadata={"internal": True})

    # -- resolved paths ------------------------------------------------------------------
    @property
    def journal_path(self) -> Path:
        return (
            Path(self.journal.path).expanduser()
            if self.journal.path
            else user_dir() / "journal.sqlite"
        )

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir).expanduser() if self.data.dir else user_dir() / "data"

    @property
    def activity_log_path(self) -> Path:
        return Path(self.log.path).expanduser() if self.log.path else user_dir() / "activity.jsonl"

    @property
    def control_socket_path(self) -> Path:
        return (
            Path(self.control.socket).expanduser()
            if self.control.socket
            else user_dir() / "run" / "control.sock"
        )

    @property
    def report_dir(self) -> Path:
        return (
            Path(self.metrics.report_dir).expanduser() if self.metrics.report_dir else self.data_dir
        )


def user_dir() -> Path:
    """fbterm's own folder; FBTERM_HOME overrides (tests and multiple instances use it)."""
    env = os.environ.get("FBTERM_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("fbterm", appauthor=False))
