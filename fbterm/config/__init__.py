"""config.toml -> frozen dataclasses, validated at start.

Each section is a frozen dataclass; a field's ``metadata`` carries its constraints
(``gt``, ``ge``, ``le``, ``choices``, ``help``). One generic walker turns TOML into the
dataclasses and reports the first problem as ``config.toml: risk.max_order_value: must be > 0,
got -5``: the file, the key path and the reason. Unknown keys are errors (a typo must not
silently turn a limit off).

Numbers are finite and bounded: ``inf`` and ``nan`` are refused everywhere (TOML allows them,
and ``max_order_value = inf`` would quietly remove a limit), ``true`` is not a number, and
sizes that cannot be meant (a 1e300 account, a window of 10**18 bars) are refused with the
bound. A risk limit that may be switched off says so with the word ``"none"``
(``max_order_value = "none"``); that is the only way to write "no limit".

The package's jobs: :mod:`.sections` (the dataclasses, their bounds, the paths they resolve),
:mod:`.parse` (TOML data to sections and back, every check), :mod:`.load` (the file, the
defaults, command-line overrides). Import from ``fbterm.config``: this is its public face.
"""

# check-config's writer lives beside the reader; importable from here as it always was.
from fbterm.config.load import DEFAULT_STRATEGIES, default_config, load_config, with_overrides
from fbterm.config.parse import (
    BUILTIN_STRATEGIES,
    config_from_dict,
    section_from_dict,
    to_dict,
)
from fbterm.config.sections import (
    MONEY_MAX,
    NO_LIMIT,
    PRICE_MAX,
    RETIRED_KEYS,
    SECONDS_MAX,
    AlertsConfig,
    BrokerConfig,
    Config,
    ConfigError,
    ControlConfig,
    CSVReplayConfig,
    DataConfig,
    EmailAlertConfig,
    IBConfig,
    JournalConfig,
    LogConfig,
    MarketConfig,
    MetricsConfig,
    PaperBrokerConfig,
    RiskConfig,
    SimulatedMarketConfig,
    SMSAlertConfig,
    StrategyConfig,
    StrategyRiskConfig,
    UIConfig,
    user_dir,
)
from fbterm.toml_dump import dump_toml as dump_toml

__all__ = [
    "BUILTIN_STRATEGIES",
    "DEFAULT_STRATEGIES",
    "MONEY_MAX",
    "NO_LIMIT",
    "PRICE_MAX",
    "RETIRED_KEYS",
    "SECONDS_MAX",
    "AlertsConfig",
    "BrokerConfig",
    "CSVReplayConfig",
    "Config",
    "ConfigError",
    "ControlConfig",
    "DataConfig",
    "EmailAlertConfig",
    "IBConfig",
    "JournalConfig",
    "LogConfig",
    "MarketConfig",
    "MetricsConfig",
    "PaperBrokerConfig",
    "RiskConfig",
    "SMSAlertConfig",
    "SimulatedMarketConfig",
    "StrategyConfig",
    "StrategyRiskConfig",
    "UIConfig",
    "config_from_dict",
    "default_config",
    "dump_toml",
    "load_config",
    "section_from_dict",
    "to_dict",
    "user_dir",
    "with_overrides",
]
