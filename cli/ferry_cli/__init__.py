"""``ferry``: the command-line client of Ferry's public API (docs/cli.md)."""

__version__ = "0.1.0"
