"""Risk management (seed module 3): strategy-level stops and the portfolio-level gate."""
