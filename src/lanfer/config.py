"""Experiment configuration: typed dataclasses, YAML files and ``--set key=value`` overrides.

One :class:`Config` describes a whole run (model, data, loss, guidance, training). It is loaded from a
YAML file, overridden from the command line with dotted keys (``--set train.lr=0.01``) and written back,
resolved, next to the run's outputs so that every run can be repeated exactly.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message says which key and why."""


@dataclass
class ModelConfig:
    # "lan_resnet18" (the paper's LAN), "resnet18" (the plain baseline), or the same pair on HSE's VGGFace2
    # MobileNet: "lan_mobilenet_vggface2" / "mobilenet_vggface2", or on dlib's face-recognition ResNet:
    # "lan_dlib_resnet" / "dlib_resnet" (lanfer.info.MODEL_NAMES)
    name: str = "lan_resnet18"
    # None: the training data's class count (as torchvision's references and timm do); resolve_num_classes
    # fills it in before a model is built, and the run's config.yaml records the number. An explicit value
    # must match the dataset.
    num_classes: int | None = None
    fusion: str = "add"  # "add" (paper default), "concat" or "average" (paper Table 6)
    # The paper gives no widths for the LAN head's four 3x3 convolutions; these are our choice.
    head_widths: list[int] = field(default_factory=lambda: [256, 128, 64])
    # Optional pretrained backbone: a shipped backbone's tag ("vggface2" for the mobilenet models, "dlib" for
    # the dlib ones) or a file (torchvision keys, `module.` prefixes or the ijba MS-Celeb-1M format).
    pretrained: str | None = None
    # Optional whole-model start: a trained lanfer model file (a run's best.safetensors, a shipped model's file)
    # of the same architecture and classes. Fine-tuning from it is a second stage (e.g. class-balanced, as in
    # Kang et al. 2020's decoupled training); it replaces every weight that `pretrained` loaded.
    init: str | None = None
    dropout: float = 0.0


@dataclass
class DataConfig:
    name: str = "imagefolder"  # a name registered in lanfer.data (imagefolder, csv, rafdb, ferplus, ...)
    root: str | None = None
    image_size: int = 224
    train_split: str = "train"
    val_split: str | None = "test"  # evaluated every epoch; the paper reports the test/validation set
    test_split: str = "test"
    subset: str | None = None  # pose-list file restricting the evaluation split
    classes: list[str] | None = None  # class order for generic layouts; None -> the dataset's own order
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific (fold, folds, num_classes, ...)
    # Normalisation: "imagenet" (mean/std) or "none" (raw [0,1]; the ijba MS-Celeb-1M model's convention).
    normalize: str = "imagenet"
    # Training augmentation: true/"full" (flip, small crop/rotation/shift, colour jitter, erasing), "wild"
    # (wider scale/rotation/shift, blur or sharpening: towards photographed faces unlike FER2013), "flip"
    # (horizontal flip only) or false/"none". Measured on the demo's small synthetic set (README): shifts and
    # crops cost accuracy in short schedules while flips help.
    augment: bool | str = True
    balanced_sampling: bool = False  # class-balanced oversampling (AffectNet)
    # -1 = auto: 0 on CPU (measured on 2 cores: the main process's OpenMP threads spin while workers wait,
    # 9 img/s with 2 workers vs 99 img/s with none), min(8, cores) on GPU. See resolve_workers().
    num_workers: int = -1
    skip_bad: bool = False  # skip undecodable images with a counted warning instead of failing
    # "rgb", or "grayscale": luminance replicated to 3 channels in training and, through the model's record,
    # at prediction (FER2013/FERPlus faces are grayscale; a colour photo must reach the model the same way).
    color: str = "rgb"
    # How a face is cut from a photo to look like this data (lanfer.info.FaceCrop: kind, margin, shift_y, like);
    # recorded in the model file so `lanfer predict` crops faces the way the model was trained. {} = the
    # aligned template crop at its default margin.
    crop: dict[str, Any] = field(default_factory=dict)
    license: str | None = None  # the training data's terms, recorded in the model file (model card)


def resolve_workers(num_workers: int, device: str = "auto") -> int:
    """``data.num_workers`` with -1 (auto) resolved for the device that trains."""
    if num_workers >= 0:
        return num_workers
    import os

    import torch

    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return min(8, os.cpu_count() or 1) if on_gpu else 0


@dataclass
class LossConfig:
    alpha: float = 0.5  # weight of the guidance BCE term (paper: 0.5, i.e. CE:BCE = 2:1)
    # Class-aware CE (issue 22; lanfer.losses.class_balance_terms), from the training split's class frequencies:
    logit_adjust: float = 0.0  # tau of Menon et al. 2021's logit-adjusted loss: CE(logits + tau*log prior); 1 = balanced
    class_weight: float = 0.0  # exponent p of the per-class CE weight prior**-p (1 = inverse frequency)
    # Offline distillation (lanfer.distill): a teachers' soft-targets file (scripts/teacher_targets.py) mixed into
    # each training label as (1 - w) * label + w * teacher, w = distill_weight; None = off.
    distill: str | None = None
    distill_weight: float = 0.5


@dataclass
class GuidanceConfig:
    # Where the guidance map comes from during training (the paper is silent; see README "Design choices"):
    #   "batch"  - centres fitted once on the pretrained backbone's F_o; each batch's own F_o (detached)
    #              is assigned to them (our reading of the paper, the default);
    #   "frozen" - a frozen copy of the pretrained backbone computes the F_o that is assigned;
    #   "none"   - no guidance (the BCE term is dropped; equivalent to alpha = 0).
    source: str = "batch"
    path: str | None = None  # an existing guidance file; None -> fitted at the start of training
    recluster_every: int = 0  # >0: refit the centres on the current backbone every N epochs
    max_images: int | None = None  # cap on training images used for fitting (None -> all)
    chunk_size: int = 2048
    seeds: int = 3  # seeds compared in the stability summary
    iters: int = 100
    tol: float = 1e-6


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 0.1  # paper: SGD, initial lr 0.1, batch 64
    optimizer: str = "sgd"  # "sgd" (the paper's, with momentum) or "adamw" (small sets, short schedules)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # Schedule (the paper gives none): linear warm-up then cosine decay to zero, stepped per iteration.
    schedule: str = "cosine"  # "cosine", "step" or "constant"
    warmup_epochs: float = 1.0
    step_size: int = 10  # for "step"
    gamma: float = 0.1  # for "step"
    label_smoothing: float = 0.0
    max_steps: int | None = None  # stop after this many optimisation steps (smoke tests, benchmarks)
    channels_last: bool = True
    # autocast precision: "auto" (bf16 on a GPU with bf16 or a CPU with AMX-BF16, else fp32; lanfer.precision),
    # "bf16", "fp16" (with a gradient scaler) or "none" (fp32). Older configs' true/false mean bf16/none.
    amp: bool | str = "auto"
    compile: bool = False  # torch.compile the training forward (first steps pay the compile time)
    device: str = "auto"
    log_every: int = 20
    tensorboard: bool = False
    progress: bool = True
    # Evaluate best.safetensors on data.test_split when training ends (metrics.json). false: a run meant for
    # selection that never scores the test split; its metrics.json then only marks the run finished, with the
    # best validation score (the scripts skip a finished run by that file).
    final_test: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        from .io import atomic_write  # whole or not at all: a resumed run reads this file back

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        atomic_write(path, lambda tmp: tmp.write_text(text))


# ----------------------------------------------------------------------------------------------------
# building from dicts, with type checks that name the offending key


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: cannot use {value!r}")
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], key) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted((str(k) for k in set(data) - names), key=str)
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}{_nearest(unknown[0], names, prefix)}; "
                          f"valid keys here: {', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, data[f.name] or {}, prefix + f.name + ".")
        else:
            kwargs[f.name] = _coerce(data[f.name], tp, prefix + f.name)
    return cls(**kwargs)


def _nearest(key: str, names: set[str], prefix: str = "") -> str:
    """`` (did you mean 'train.lr'?)`` for a mistyped key, or nothing when no valid key is close."""
    import difflib

    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
    if not close and key.lower() in {n.lower() for n in names}:
        close = [n for n in names if n.lower() == key.lower()]
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


def _parse_scalar(text: str) -> Any:
    # YAML's scalar rules: "0.1" -> float, "null" -> None, "[1,2]" -> list, "abc" -> str.
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a nested dict (in place) and return it."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=0.01)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: {key.strip()!r} is not a dotted key such as train.lr")
        node = data
        for p in parts[:-1]:
            if node.get(p) is None:  # absent, or an empty section in the YAML file (`train:` alone)
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = _parse_scalar(text)
    return data


def config_from_dict(data: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """Build a validated :class:`Config` from a nested dict plus ``key=value`` overrides."""
    data = apply_overrides(dict(data or {}), overrides)
    cfg = _build(Config, data)
    validate(cfg)
    return cfg


def packaged_configs() -> dict[str, Any]:
    """The experiment configs that ship inside the package (``lanfer/configs/*.yaml``), by name.

    Values are :mod:`importlib.resources` traversables (a :class:`~pathlib.Path` for an ordinary install), so
    the configs are found wherever pip put the package, with or without a clone of the repository.
    """
    from importlib.resources import files

    folder = files("lanfer") / "configs"
    if not folder.is_dir():
        return {}
    return {f.name[: -len(".yaml")]: f for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".yaml")}


def configs_text() -> str:
    """``lanfer configs``: one line per packaged config, its name and the first line of its header comment."""
    found = packaged_configs()
    if not found:
        return "no packaged configs found (is lanfer installed with its package data?)"
    width = max(len(n) for n in found)
    lines = []
    for name, f in found.items():
        first = next((ln.lstrip("#").strip() for ln in f.read_text().splitlines() if ln.startswith("#")), "")
        lines.append(f"{name:<{width}}  {first}")
    return "\n".join(lines + ["", "use one by name (lanfer train kdef_lan) or copy it and edit "
                               "(a file path always wins over a packaged name)"])


def _find_config(path: str | Path) -> tuple[str, str]:
    """(where, YAML text) for a config file path, or for the name of a packaged config.

    A file that exists wins; otherwise a bare name (``kdef_lan`` or ``kdef_lan.yaml``, no folder) is looked
    up among the packaged configs. The error lists the packaged names, so a typo is one look away from its fix.
    """
    p = Path(path)
    if p.is_file():
        try:
            return str(p), p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); a config is a YAML text "
                              "file") from None
    found = packaged_configs()
    name = p.name[: -len(p.suffix)] if p.suffix in (".yaml", ".yml") else p.name
    bare = len(p.parts) == 1
    if bare and name in found:
        return f"{name} (packaged: {found[name]})", found[name].read_text()
    if name in found:  # e.g. configs/kdef_lan.yaml outside a clone of the repository
        raise ConfigError(f"config file {str(p)!r} does not exist; {name!r} is a packaged config: "
                          f"pass just the name {name}")
    raise ConfigError(f"config file {str(p)!r} does not exist; pass a YAML file or the name of a packaged "
                      f"config: {', '.join(found) or 'none found'} (`lanfer configs` describes them)")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or start from defaults when ``path`` is None) and apply overrides.

    ``path`` is a YAML file or, when no such file exists, the name of a packaged config (``kdef_lan``).
    """
    data: dict[str, Any] = {}
    if path is not None:
        where, text = _find_config(path)
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: not valid YAML: {_yaml_problem(e)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: the top level must be a mapping of sections (model:, data:, ...)")
    try:
        return config_from_dict(data, overrides)
    except ConfigError as e:
        where = f"{path}: " if path else ""
        raise ConfigError(where + str(e)) from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line: what the YAML parser objects to and where (its own message spans four, with a caret)."""
    mark = getattr(error, "problem_mark", None)
    what = " ".join(str(x) for x in (getattr(error, "context", None), getattr(error, "problem", None)) if x)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return (what or str(error).splitlines()[0]) + where


AUGMENT_MODES = ("full", "wild", "flip", "none")


def amp_mode(value: bool | str) -> str:
    """``train.amp`` as one of :data:`lanfer.precision.AMP_MODES` (an older config's ``true`` is ``"bf16"``, the
    precision it meant, and ``false`` is ``"none"``)."""
    from .precision import AMP_MODES

    if isinstance(value, bool):
        return "bf16" if value else "none"
    if value not in AMP_MODES:
        raise ConfigError(f"train.amp={value!r} is not one of {', '.join(AMP_MODES)} (true/false: bf16/none)")
    return value


def augment_mode(value: bool | str) -> str:
    """``data.augment`` as one of :data:`AUGMENT_MODES` (``True`` is ``"full"``, ``False`` is ``"none"``)."""
    if isinstance(value, bool):
        return "full" if value else "none"
    if value not in AUGMENT_MODES:
        raise ConfigError(f"data.augment={value!r} is not one of true, false, {', '.join(AUGMENT_MODES)}")
    return value


def validate(cfg: Config) -> None:
    """Reject values that would fail later, deep inside training, with a message now."""
    from .info import MODEL_NAMES, NORMALIZATIONS

    choices = {
        "model.name": (cfg.model.name, MODEL_NAMES),
        "model.fusion": (cfg.model.fusion, ("add", "concat", "average")),
        "guidance.source": (cfg.guidance.source, ("batch", "frozen", "none")),
        "train.schedule": (cfg.train.schedule, ("cosine", "step", "constant")),
        "train.optimizer": (cfg.train.optimizer, ("sgd", "adamw")),
        "data.normalize": (cfg.data.normalize, NORMALIZATIONS),
        "data.color": (cfg.data.color, ("rgb", "grayscale")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    augment_mode(cfg.data.augment)
    cfg.train.amp = amp_mode(cfg.train.amp)
    import math

    for section in (cfg.model, cfg.data, cfg.loss, cfg.guidance, cfg.train):
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float) and not math.isfinite(value):  # YAML's .nan / .inf
                raise ConfigError(f"{type(section).__name__[:-len('Config')].lower()}.{f.name}={value} must be "
                                  "a finite number")
    if not isinstance(cfg.data.crop, dict):
        raise ConfigError(f"data.crop={cfg.data.crop!r} must be a mapping (kind, margin, shift_y, like)")
    from .info import FaceCrop, InfoError

    try:
        FaceCrop(**cfg.data.crop)
    except (TypeError, InfoError) as e:
        raise ConfigError(f"data.crop={cfg.data.crop!r}: {e}") from None
    positive = {
        "model.num_classes": cfg.model.num_classes,
        "data.image_size": cfg.data.image_size,
        "train.batch_size": cfg.train.batch_size,
    }
    for key, value in positive.items():
        if value is not None and value <= 0:
            raise ConfigError(f"{key}={value} must be positive")
    if cfg.data.image_size < 32:
        raise ConfigError(f"data.image_size={cfg.data.image_size} is too small: ResNet-18 needs >= 32 pixels")
    if cfg.loss.alpha < 0:
        raise ConfigError(f"loss.alpha={cfg.loss.alpha} must be >= 0")
    for key in ("logit_adjust", "class_weight"):
        if not 0 <= getattr(cfg.loss, key) <= 4:
            raise ConfigError(f"loss.{key}={getattr(cfg.loss, key)} must be in [0, 4] (0 = off, 1 = fully balanced)")
    if not 0 < cfg.loss.distill_weight <= 1:
        raise ConfigError(f"loss.distill_weight={cfg.loss.distill_weight} must be in (0, 1] (the teachers' share of "
                          "each training target; up to 0.5 the face's own label stays the arg-max)")
    if cfg.train.lr <= 0:
        raise ConfigError(f"train.lr={cfg.train.lr} must be positive")
    if cfg.train.epochs < 0:
        raise ConfigError(f"train.epochs={cfg.train.epochs} must be >= 0")


def resolve_num_classes(cfg: Config, classes: list[str]) -> None:
    """Set ``model.num_classes`` from the training data's class names when the config leaves it unset;
    refuse an explicit value that disagrees (a 7-way head on a 2-class set is a mistake, not a choice)."""
    if len(classes) < 2:
        raise ConfigError(f"the dataset at data.root={cfg.data.root!r} has {len(classes)} class{'es' * (len(classes) != 1)} "
                          f"{list(classes)}; a classifier needs at least 2: check data.root and data.name")
    if cfg.model.num_classes is None:
        cfg.model.num_classes = len(classes)
    elif cfg.model.num_classes != len(classes):
        raise ConfigError(f"the dataset has {len(classes)} classes {list(classes)} but model.num_classes="
                          f"{cfg.model.num_classes}; leave model.num_classes unset to take the dataset's count, "
                          f"or --set model.num_classes={len(classes)}")
