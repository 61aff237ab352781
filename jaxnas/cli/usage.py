"""What every command of the CLI shares: the one-line error and argument types."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """A user mistake the CLI reports in one line (exit code 2)."""


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value
