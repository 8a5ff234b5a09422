"""The typed record of what a model file is (timm's ``PretrainedCfg``, for FER models).

A model file (``best.safetensors``, an exported ``.onnx``, a shipped model) carries one :class:`ModelInfo`:
the architecture and its arguments, the class names, the input size, normalisation, colour mode, the face crop
the model was trained on, the training data and its licence, the command that produced it and its numbers.
Evaluation, prediction and export build their preprocessing from it (``EvalPreset.from_info``), never from
defaults, so a model trained on 48x48 grayscale FERPlus crops is fed grayscale FERPlus-like crops and a model
trained on aligned RAF-DB faces keeps its own.

One codec serves both containers: :meth:`ModelInfo.to_metadata` gives the ``str -> str`` map that safetensors
headers and ONNX ``metadata_props`` hold, :meth:`ModelInfo.from_metadata` reads it back. The key names are
those of format version 1 (``model``, ``classes``, ``image_size``, ``normalize``, ``data``, ``seed``,
``alpha``, ``guidance_source``); version 1 files written before this record existed lack ``color``, ``crop``,
``license``, ``command`` and ``metrics`` and load with the values they were trained with (RGB, the aligned
template crop at its default margin). Files written before calibration lack ``temperature``, ``class_prior``
and ``prior_tau`` and load uncalibrated: temperature 1, no prior correction (:mod:`lanfer.calibration`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

#: the architectures lanfer builds (``lanfer.model.create_model``), and so the ones a model file may name
MODEL_NAMES = ("lan_resnet18", "resnet18", "lan_mobilenet_vggface2", "mobilenet_vggface2", "lan_dlib_resnet",
               "dlib_resnet")
#: those of them with the LAN head (the others are the plain baselines on the same backbones)
LAN_NAMES = ("lan_resnet18", "lan_mobilenet_vggface2", "lan_dlib_resnet")

#: pixel normalisations a model file may name (their values: ``lanfer.data.presets.normalization``)
NORMALIZATIONS = ("imagenet", "none", "vggface2_bgr", "dlib_rgb")

FORMAT = "lanfer"
FORMAT_VERSION = "1"
COLOR_MODES = ("rgb", "grayscale")
CROP_KINDS = ("template", "box")
# Bounds on what a model file may ask for: its record decides how big a model is built and how large an
# input is resized to, before any weight is checked, so a crafted record must not allocate gigabytes.
MAX_INPUT_SIZE = 4096
MAX_WIDTH = 8192
MAX_CLASSES = 100_000


class InfoError(ValueError):
    """Model metadata that cannot be used (missing keys, wrong types); the message names the file."""


#: the largest |prior_tau|: 1 is the balanced-error rule; a negative tau moves a model trained with a logit-adjusted
#: loss (loss.logit_adjust, whose raw logits are already balanced) back towards the training prior
MAX_ABS_TAU = 4.0


@dataclass
class FaceCrop:
    """How a face was cut out of a photo for this model, so prediction can cut it the same way.

    ``kind="template"``: the five-point similarity alignment of :mod:`lanfer.faces.align` (ArcFace's template
    padded by ``margin`` on every side, then moved down by ``shift_y`` of the side: positive values show more
    forehead). ``kind="box"``: the detector's box, squared and grown by ``margin`` (no rotation).
    ``like`` names the dataset whose crops these imitate (``"ferplus"``), for the model card.
    """

    kind: str = "template"
    margin: float = 0.1
    shift_y: float = 0.0
    like: str | None = None

    def __post_init__(self):
        if self.kind not in CROP_KINDS:
            raise InfoError(f"face crop kind {self.kind!r} is not one of {', '.join(CROP_KINDS)}")
        for name in ("margin", "shift_y"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= 10:
                raise InfoError(f"face crop {name}={value!r} must be a number in [-1, 10]")


@dataclass
class ModelInfo:
    """What a model file is and how to feed it; see the module docstring.

    ``arch`` is the :func:`lanfer.create_model` name; ``fusion``, ``head_widths`` and ``dropout`` its
    arguments. ``input_size`` is the side of the square input, ``normalize`` the name in
    :func:`lanfer.data.presets.normalization`, ``color`` ``"rgb"`` or ``"grayscale"`` (luminance replicated to
    3 channels, as FER2013's faces are). ``data`` records the training data (name, options); ``license`` its
    terms; ``command`` how the file was made; ``metrics`` its evaluation summary (accuracy by split/subset).
    ``extra`` keeps training facts that rebuild nothing (seed, alpha, guidance source).

    The shipped operating point (:mod:`lanfer.calibration`; written by ``lanfer calibrate``): probabilities are
    ``softmax((logits - prior_tau * log(class_prior)) / temperature)``. ``class_prior`` holds the training
    set's class frequencies in ``classes`` order (None: no prior recorded), ``prior_tau`` the logit-adjustment
    strength (Menon et al. 2021; 0: none), ``temperature`` the scale fitted on validation (Guo et al. 2017).
    """

    arch: str
    classes: list[str]
    input_size: int = 224
    normalize: str = "imagenet"
    color: str = "rgb"
    fusion: str = "add"
    head_widths: list[int] = field(default_factory=lambda: [256, 128, 64])
    dropout: float = 0.0
    crop: FaceCrop = field(default_factory=FaceCrop)
    data: dict[str, Any] = field(default_factory=dict)
    license: str | None = None
    command: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    class_prior: list[float] | None = None
    prior_tau: float = 0.0

    def __post_init__(self):
        if not isinstance(self.classes, (list, tuple)) or not 2 <= len(self.classes) <= MAX_CLASSES:
            raise InfoError(f"a model needs 2..{MAX_CLASSES} class names, got {str(self.classes)[:200]}")
        self.classes = [str(c) for c in self.classes]
        if len(set(self.classes)) != len(self.classes):
            raise InfoError(f"class names repeat: {self.classes}")
        if self.color not in COLOR_MODES:
            raise InfoError(f"color={self.color!r} is not one of {', '.join(COLOR_MODES)}")
        if isinstance(self.crop, Mapping):
            self.crop = FaceCrop(**self.crop)
        self.input_size = int(self.input_size)
        if not 16 <= self.input_size <= MAX_INPUT_SIZE:
            raise InfoError(f"input size {self.input_size} is outside 16..{MAX_INPUT_SIZE}")
        if not isinstance(self.head_widths, (list, tuple)) or len(self.head_widths) > 16:
            raise InfoError(f"head_widths={str(self.head_widths)[:200]} must be a short list of integers")
        self.head_widths = [int(w) for w in self.head_widths]
        if any(not 1 <= w <= MAX_WIDTH for w in self.head_widths):
            raise InfoError(f"head_widths={self.head_widths} must lie in 1..{MAX_WIDTH}")
        self.dropout = float(self.dropout)
        if not 0 <= self.dropout < 1:
            raise InfoError(f"dropout={self.dropout} must lie in [0, 1)")
        self._check_calibration()

    def _check_calibration(self) -> None:
        """A temperature, prior and tau that give finite probabilities, or an InfoError naming the value."""
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise InfoError(f"temperature={t!r} must be a positive finite number (1: uncalibrated)")
        self.temperature = float(t)
        tau = self.prior_tau
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or abs(tau) > MAX_ABS_TAU:
            raise InfoError(f"prior_tau={tau!r} must be a finite number in [-{MAX_ABS_TAU:g}, {MAX_ABS_TAU:g}] "
                            "(0: no prior correction)")
        self.prior_tau = float(tau)
        prior = self.class_prior
        if prior is None:
            if self.prior_tau != 0:
                raise InfoError(f"prior_tau={self.prior_tau:g} needs a class_prior, and the record has none")
            return
        if not isinstance(prior, (list, tuple)) or len(prior) != self.num_classes:
            raise InfoError(f"class_prior={str(prior)[:200]} must be a list of {self.num_classes} frequencies, one "
                            f"per class of {self.classes}")
        if any(isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p <= 0
               for p in prior):
            raise InfoError(f"class_prior={list(prior)} must hold positive finite frequencies (log(prior) is used)")
        if abs(sum(prior) - 1) > 1e-3:
            raise InfoError(f"class_prior={list(prior)} sums to {sum(prior):.6g}, not 1")
        self.class_prior = [float(p) for p in prior]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def model_kwargs(self) -> dict[str, Any]:
        """The :func:`lanfer.create_model` arguments that rebuild this model (no weights)."""
        return dict(name=self.arch, num_classes=self.num_classes, fusion=self.fusion,
                    head_widths=tuple(self.head_widths), dropout=self.dropout)

    # ------------------------------------------------------------------------------------------------
    # the codec (safetensors header and ONNX metadata_props hold the same str -> str map)

    def to_metadata(self) -> dict[str, str]:
        """``str -> str`` metadata: format markers plus one JSON value per key (format version 1 names)."""
        kw = self.model_kwargs()
        kw["head_widths"] = list(kw["head_widths"])
        values: dict[str, Any] = {
            "model": kw, "classes": self.classes, "image_size": self.input_size, "normalize": self.normalize,
            "color": self.color, "crop": asdict(self.crop), "data": self.data, "license": self.license,
            "command": self.command, "metrics": self.metrics, "temperature": self.temperature,
            "class_prior": self.class_prior, "prior_tau": self.prior_tau, **self.extra,
        }
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": self.arch}
        meta.update({k: json.dumps(v) for k, v in values.items()})
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], where: str = "model file") -> ModelInfo:
        """Read :meth:`to_metadata`'s map back, including version 1 files that predate ``color``/``crop``."""
        if meta.get("format") != FORMAT:
            raise InfoError(f"{where}: not a lanfer model file (no lanfer metadata); to load backbone weights "
                            "from another project use model.pretrained / load_backbone")
        version = str(meta.get("format_version", "1"))
        if version != FORMAT_VERSION:
            raise InfoError(f"{where}: lanfer model format version {version}; this lanfer reads version "
                            f"{FORMAT_VERSION} (upgrade lanfer to read newer files)")
        v = decode_metadata(meta)
        margs = v.get("model")
        if margs is None and isinstance(v.get("arch"), str):
            # an ONNX graph needs no constructor arguments to run; its record may name only the architecture
            margs = {"name": v["arch"] or "unknown"}
        if not isinstance(margs, dict) or "name" not in margs:
            if margs is None and "classes" in v and "image_size" in v:
                margs = {"name": "unknown"}
            else:
                raise InfoError(f"{where}: metadata lacks the model config ('model' key); was it written by lanfer?")
        classes = v.get("classes")
        if not isinstance(classes, list):
            raise InfoError(f"{where}: metadata lacks the class names ('classes' key)")
        n = margs.get("num_classes", len(classes))
        if n != len(classes):
            raise InfoError(f"{where}: model.num_classes={n} but {len(classes)} class names {classes}")
        known = {"format", "format_version", "arch", "model", "classes", "image_size", "normalize", "color",
                 "crop", "data", "license", "command", "metrics", "temperature", "class_prior", "prior_tau"}
        try:
            return cls(arch=margs["name"], classes=classes, input_size=int(v.get("image_size") or 224),
                       normalize=str(v.get("normalize") or "imagenet"), color=str(v.get("color") or "rgb"),
                       fusion=margs.get("fusion", "add"), head_widths=list(margs.get("head_widths", [256, 128, 64])),
                       dropout=float(margs.get("dropout", 0.0)), crop=FaceCrop(**(v.get("crop") or {})),
                       data=v.get("data") or {}, license=v.get("license"), command=v.get("command"),
                       metrics=v.get("metrics") or {}, temperature=v.get("temperature", 1.0),
                       class_prior=v.get("class_prior"), prior_tau=v.get("prior_tau", 0.0),
                       extra={k: x for k, x in v.items() if k not in known})
        except InfoError as e:
            raise InfoError(f"{where}: {e}") from None
        except (TypeError, ValueError, AttributeError, OverflowError) as e:
            raise InfoError(f"{where}: unusable model metadata ({e})") from None

    def to_json(self) -> dict[str, Any]:
        """A plain dict (for ``lanfer models``, the HTTP API and reports)."""
        return asdict(self)


def decode_metadata(meta: Mapping[str, str]) -> dict[str, Any]:
    """String metadata (safetensors header, ONNX metadata_props) -> values, JSON-decoded where they are JSON."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            out[k] = v
    return out
