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


def min_face_size(text: str) -> int:
    """argparse type: a face side in pixels that MTCNN can search for (its smallest window is 12 px)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels such as 40, got {text!r}") from None
    from ..faces import MTCNN_MIN_FACE

    if v < MTCNN_MIN_FACE:
        raise argparse.ArgumentTypeError(f"{v} px is below MTCNN's smallest window ({MTCNN_MIN_FACE} px): use "
                                         f"{MTCNN_MIN_FACE} or more")
    return v


#: ``--detector``'s default: lanfer.faces.DEFAULT_DETECTOR (not imported here, which would load torch for
#: ``lanfer --help``; tests/test_blazeface.py checks that the two agree).
DETECTOR = "blazeface"


def detector_name(text: str) -> str:
    """argparse type: a registered face detector's name (``--detector``), or an error listing them."""
    from ..faces import available_detectors

    if text not in available_detectors():
        raise argparse.ArgumentTypeError(f"unknown face detector {text!r}; choose one of "
                                         f"{', '.join(available_detectors())}")
    return text


def add_detector_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", type=detector_name, default=DETECTOR, metavar="NAME",
                   help=f"face detector: {DETECTOR} (default; fast, shipped in the package) or mtcnn (slower, "
                        "needs pip install 'lanfer[faces]'); README, Face detectors")


#: ``--smooth``'s default: lanfer.predict.predictor.SMOOTH (not imported here, which would load torch for
#: ``lanfer --help``; tests/test_tracking.py checks that the two agree).
SMOOTH = 0.5


def frame_count(text: str) -> int:
    """argparse type: a whole number of frames >= 1 (``--detect-every``, ``--classify-every``)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of frames such as 3, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more frames, got {v}")
    return v


def smooth_factor(text: str) -> float:
    """argparse type: the weight of the past in a moving average, in [0, 1) (``--smooth``)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) such as 0.5, got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) (0: no smoothing), got {v:g}")
    return v


def named_files(items: list[str], flag: str = "--subset",
                example: str = "pose45=pose_45_ferplus_list.txt") -> dict[str, str]:
    """``["pose45=LIST", ...]`` (a repeatable NAME=FILE flag) -> ``{"pose45": "LIST"}``; a ConfigError names the
    item that is not NAME=FILE or a NAME given twice."""
    from ..config import ConfigError

    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"{flag} {item!r}: expected NAME=FILE, e.g. {example}")
        if name in out:
            raise ConfigError(f"{flag} {item!r}: the name {name!r} is given twice")
        out[name] = path
    return out


def add_prior_tau_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior-tau", type=float, metavar="TAU",
                   help="the operating point: subtract TAU x log(class prior) from the logits before the softmax "
                        "(0: the plain classifier; default: the model file's own prior_tau, see lanfer calibrate)")


def prior_tau_or_auto(text: str) -> float | str:
    """argparse type: ``auto`` or a finite tau in [-4, 4] (``lanfer calibrate --prior-tau``)."""
    from ..calibrate import parse_prior_tau

    try:
        return parse_prior_tau(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [-4, 4] such as 1.0, got {text!r}") from None
