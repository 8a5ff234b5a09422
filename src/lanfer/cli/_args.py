"""Flags and argument types that several ``lanfer`` commands share."""
from __future__ import annotations

import argparse


def add_set_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=0.01 (repeatable)")


def float_list(text: str) -> list[float]:
    """argparse type: "30,45" -> [30.0, 45.0], with a message naming the text when it is not numbers."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 30,45, got {text!r}") from None
