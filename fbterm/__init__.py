"""fbterm: the Fahrenheit Black quantitative trading console."""

__version__ = "0.1.0"
