"""The ``lanfer`` command: argparse subcommands, each parsing its flags and calling one library function.

No logic lives here: every command is a thin face over a function in the package (see docs/DESIGN.md).
Errors the user can fix (bad config, missing file, bad data, a missing optional dependency) are printed as one
line and exit code 2; anything else, including an ImportError from lanfer's own code, keeps its traceback.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import analysis, apps, datasets, models, training

# Every command, in the order `lanfer --help` shows them. Each add_<command> registers one subcommand and sets
# `func`; imports happen inside `func`, so `lanfer --help` stays fast and one command's optional
# dependency never breaks another command.
COMMANDS: list = [apps.add_demo, training.add_train, training.add_eval, training.add_cluster,
                  datasets.add_prepare, datasets.add_datasets, datasets.add_pose_subsets, datasets.add_synth,
                  models.add_predict, models.add_export, models.add_models, models.add_calibrate, models.add_ship, models.add_configs,
                  analysis.add_cam, analysis.add_report, analysis.add_compare, training.add_ablate, apps.add_serve]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="lanfer", description="Pose-robust facial expression recognition (Local Attention Network).")
    parser.add_argument("--version", action="version", version=f"lanfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..config import ConfigError
    from ..data.base import DataError
    from ..devices import DeviceError

    errors: list[type[BaseException]] = [ConfigError, DataError, DeviceError, FileNotFoundError]
    try:  # both import torch; where it is missing, no command that could raise them runs
        from ..checkpoint import CheckpointError
        from ..guidance import GuidanceError
        from ..info import InfoError
        from ..train import NonFiniteLossError
        errors += [CheckpointError, GuidanceError, InfoError, NonFiniteLossError]
    except ImportError:
        pass
    return tuple(errors)


# The optional dependencies, by top-level module, and the extra of pyproject.toml that installs each (None: not
# in an extra). Keep in step with [project.optional-dependencies].
OPTIONAL_MODULES: dict[str, str | None] = {
    "facenet_pytorch": "faces", "cv2": "faces",
    "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx",
    "sklearn": "test", "pytest": "test",
    "fastapi": "serve", "uvicorn": "serve", "python_multipart": "serve",
    "tensorboard": None,
}


def missing_optional(error: ImportError) -> str | None:
    """The one-line message for ``error`` when it is a missing optional dependency, else None.

    The exception and the ones it was raised from (lanfer re-raises with an install hint) are searched for an
    ImportError naming an optional module. Anything else, such as an import that fails inside lanfer itself or
    a missing core dependency, is a bug or a broken install and keeps its traceback.
    """
    err: BaseException | None = error
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        module = (getattr(err, "name", None) or "").split(".")[0] if isinstance(err, ImportError) else ""
        if module in OPTIONAL_MODULES:
            message = str(error)
            if "pip install" in message:  # lanfer's own hint already says what to install
                return message
            extra = OPTIONAL_MODULES[module]
            how = f'pip install "lanfer[{extra}]"' if extra else f"pip install {module}"
            return f"{message}; this command needs the optional dependency {module}: {how}"
        err = err.__cause__ or err.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except _user_errors() as e:
        print(f"lanfer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        message = missing_optional(e)
        if message is None:
            raise  # not a missing extra: an import broken inside lanfer is a bug, so show where
        print(f"lanfer {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lanfer {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`lanfer configs | head`): not the command's failure; stdout is pointed at devnull
        # so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(result or 0)

