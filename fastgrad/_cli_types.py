"""argparse types shared by every fastgrad command: a bad value is a one-line
usage error with exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """A positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = int_value(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_int_list(text: str) -> list:
    """Comma-separated positive integers."""
    return [positive_int(t) for t in text.split(",")]


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = int_value(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def int_value(text: str) -> int:
    """Any integer (a seed)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def real_in(low: float, high: float, *, high_open: bool = False, low_open: bool = False):
    """A finite real number in [low, high] (or with open ends)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        bad = (not math.isfinite(value) or value < low or value > high
               or (high_open and value == high) or (low_open and value == low))
        if bad:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value
    return parse
