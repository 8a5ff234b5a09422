"""The ``lanfer`` command: argparse subcommands, each parsing its flags and calling one library function.

No logic lives here: every command is a thin face over a function in the package (see DESIGN.md).
Errors the user can fix (bad config, missing file, bad data) are printed as one line and exit code 2.
"""
from __future__ import annotations

import argparse
import sys


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=0.01 (repeatable)")


# Each _add_<command> registers one subcommand and sets `func`. Imports happen inside `func` so that
# `lanfer --help` stays fast and one command's optional dependency never breaks another command.

def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train LAN or the ResNet-18 baseline from a YAML config",
                       description="Train a model. Example: lanfer train configs/rafdb_lan.yaml "
                                   "--set data.root=/data/RAF-DB --out runs/rafdb_lan")
    p.add_argument("config", help="YAML config (see configs/)")
    _add_set(p)
    p.add_argument("--out", help="run directory (default: the config's `out`, else runs/train)")
    p.add_argument("--resume", action="store_true", help="continue exactly from OUT/last.ckpt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(a):
        from .config import load_config
        from .train import train

        cfg = load_config(a.config, a.overrides)
        train(cfg, out=a.out, resume=a.resume, progress=False if a.no_progress else None)

    p.set_defaults(func=run)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split or pose subset",
                       description="Evaluate a model file. Example: lanfer eval runs/rafdb_lan/best.safetensors "
                                   "--data configs/rafdb_lan.yaml --split test --subset val_raf_db_list_45.txt")
    p.add_argument("checkpoint", help="a lanfer model file (RUN_DIR/best.safetensors)")
    p.add_argument("--data", help="a YAML config whose data section to use, or a dataset name "
                                  "(default: the dataset recorded in the checkpoint)")
    p.add_argument("--root", help="dataset root (overrides the config's data.root)")
    p.add_argument("--split", default="test")
    p.add_argument("--subset", help="pose-list file (RAN format) restricting the split")
    _add_set(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="write metrics.json here (a folder or a .json path)")

    def run(a):
        from .evaluate import evaluate_checkpoint, format_metrics

        m = evaluate_checkpoint(a.checkpoint, data=a.data, root=a.root, split=a.split, subset=a.subset,
                                overrides=a.overrides, batch_size=a.batch_size, device=a.device, out=a.out)
        print(format_metrics(m, f"{a.checkpoint} on {m['dataset']['name']}/{a.split}"
                                + (f" subset {a.subset}" if a.subset else "")))

    p.set_defaults(func=run)


def _add_cluster(sub) -> None:
    p = sub.add_parser("cluster", help="fit the guidance map centres (K=2 per position) and write the file",
                       description="Example: lanfer cluster configs/rafdb_lan.yaml --set data.root=/data/RAF-DB "
                                   "--out runs/rafdb_guidance")
    p.add_argument("config")
    _add_set(p)
    p.add_argument("--out", help="folder for guidance.safetensors and its summary")

    def run(a):
        from .config import load_config
        from .train import cluster

        cluster(load_config(a.config, a.overrides), out=a.out)

    p.set_defaults(func=run)


# --- end of commands ---

COMMANDS: list = [_add_train, _add_eval, _add_cluster]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="lanfer", description="Pose-robust facial expression recognition (Local Attention Network).")
    parser.add_argument("--version", action="version", version=f"lanfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from .config import ConfigError
    from .data.base import DataError

    errors: list[type[BaseException]] = [ConfigError, DataError, FileNotFoundError]
    try:
        from .checkpoint import CheckpointError
        errors.append(CheckpointError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except _user_errors() as e:
        print(f"lanfer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lanfer {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
