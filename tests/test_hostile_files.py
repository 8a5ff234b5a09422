"""Files that carry code or lies: every reader of a model, training state, guidance, feature store, ONNX file,
config or prepared cache refuses a pickle whose unpickling would run code, and says what is wrong with a
malformed, truncated or mismatched file in one message that names it (the command line: exit 2, one line on
stderr, no traceback).

The reference for "no code ran" is a marker file: each pickle below would create it when unpickled, and
:func:`_pickle_proof` also unpickles one on purpose to show that the marker does appear when code runs.
"""
from __future__ import annotations

import builtins
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_imagefolder

import lanfer
from lanfer.checkpoint import (CheckpointError, load_backbone, load_training_state, read_model_info, save_model,
                               save_training_state)
from lanfer.cli import main
from lanfer.config import ConfigError, load_config
from lanfer.data import DataError
from lanfer.guidance import FeatureStore, Guidance, GuidanceError
from lanfer.model import load_model

CLASSES = ["a", "b", "c"]


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears only if a loader runs pickled code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a loader executed code from a pickle"


def _pickle_proof(marker: Path) -> bytes:
    data = pickle.dumps({"model": _Payload(marker)})
    return data


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    m = tmp_path / "proof"
    pickle.loads(_pickle_proof(m))  # the one deliberate unpickling: the marker must appear
    assert m.exists()


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The payload in every container a lanfer reader could be handed."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    files["torch_zip"] = folder / "last.ckpt"
    torch.save({"model": _Payload(marker), "epoch": 1}, files["torch_zip"])  # torch's zip format
    files["raw_pickle"] = folder / "weights.pth"
    files["raw_pickle"].write_bytes(_pickle_proof(marker))
    files["safetensors"] = folder / "model.safetensors"
    files["safetensors"].write_bytes(_pickle_proof(marker))
    files["guidance"] = folder / "guidance.safetensors"
    files["guidance"].write_bytes(_pickle_proof(marker))
    files["onnx"] = folder / "model.onnx"
    files["onnx"].write_bytes(_pickle_proof(marker))
    files["yaml"] = folder / "evil.yaml"
    files["yaml"].write_text(f"model: !!python/object/apply:builtins.open [{str(marker)!r}, w]\n")
    files["npy"] = folder / "labels_test.npy"
    np.save(files["npy"], np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    return files


def test_no_loader_runs_pickled_code(tmp_path, marker):
    files = _evil_files(tmp_path / "evil", marker)
    with pytest.raises(CheckpointError, match="last.ckpt.*never unpickles"):
        load_training_state(files["torch_zip"])
    with pytest.raises(CheckpointError, match="weights.pth"):
        load_training_state(files["raw_pickle"])
    with pytest.raises(CheckpointError, match="weights.pth.*weights_only"):
        load_backbone(lanfer.create_model("resnet18", num_classes=3).backbone, files["raw_pickle"])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        read_model_info(files["safetensors"])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(files["safetensors"])
    with pytest.raises(GuidanceError, match="guidance.safetensors"):
        Guidance.load(files["guidance"])
    from lanfer.predict.runners import read_onnx_metadata

    with pytest.raises(CheckpointError, match="model.onnx"):
        read_onnx_metadata(files["onnx"])
    with pytest.raises(ConfigError, match="evil.yaml: not valid YAML"):
        load_config(files["yaml"])
    from lanfer.data.prepare import _load_array

    with pytest.raises(DataError, match="labels_test.npy"):
        _load_array(files["npy"])
    store = tmp_path / "evil" / "feats.bin"
    store.write_bytes(_pickle_proof(marker))
    Path(str(store) + ".json").write_bytes(_pickle_proof(marker))
    with pytest.raises(GuidanceError, match="feats.bin.json"):
        FeatureStore.open(store)


def _cli_error(argv, capsys) -> str:
    """Run the CLI in-process: it must return 2 and print one line on stderr (no traceback)."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_cli_commands_refuse_pickles(tmp_path, marker, capsys):
    files = _evil_files(tmp_path / "evil", marker)
    data = make_imagefolder(tmp_path / "data", per_class=2, size=32)
    img = next((data / "test").rglob("*.png"))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {{name: resnet18}}\ndata: {{name: imagefolder, root: {data}, image_size: 32, "
                   "num_workers: 0}\ntrain: {epochs: 1, batch_size: 4, progress: false, channels_last: false}\n")
    assert "model.safetensors" in _cli_error(["eval", files["safetensors"], "--data", cfg], capsys)
    assert "model.safetensors" in _cli_error(["predict", "--model", files["safetensors"], img, "--no-detect",
                                              "--out", tmp_path / "p", "--no-progress"], capsys)
    assert "model.onnx" in _cli_error(["predict", "--onnx", files["onnx"], img, "--no-detect", "--out",
                                       tmp_path / "p", "--no-progress"], capsys)
    assert "model.safetensors" in _cli_error(["export", files["safetensors"], "--out", tmp_path / "m.onnx"], capsys)
    assert "evil.yaml" in _cli_error(["train", files["yaml"], "--out", tmp_path / "r0"], capsys)
    assert "weights.pth" in _cli_error(["train", cfg, "--set", f"model.pretrained={files['raw_pickle']}",
                                        "--out", tmp_path / "r1", "--no-progress"], capsys)
    run = tmp_path / "r2"
    run.mkdir()
    (run / "last.ckpt").write_bytes(files["torch_zip"].read_bytes())
    assert "last.ckpt" in _cli_error(["train", cfg, "--out", run, "--resume", "--no-progress"], capsys)
    assert "guidance.safetensors" in _cli_error(
        ["train", cfg, "--set", "model.name=lan_resnet18", "--set", f"guidance.path={files['guidance']}",
         "--out", tmp_path / "r3", "--no-progress"], capsys)


# ----------------------------------------------------------------------------------------------------
# files that lie: malformed headers, truncation, another architecture or class count


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    m = lanfer.create_model("lan_resnet18", num_classes=3, head_widths=(8, 8, 8))
    info = {"model": {"name": "lan_resnet18", "num_classes": 3, "head_widths": [8, 8, 8]}, "classes": CLASSES,
            "image_size": 32}
    return save_model(tmp_path_factory.mktemp("m") / "good.safetensors", m, info)


def _header(path: Path) -> tuple[int, dict, bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return n, json.loads(raw[8:8 + n]), raw[8 + n:]


def _with_header(header: dict, body: bytes) -> bytes:
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


def _bad_model_files(good: Path, folder: Path) -> dict[str, bytes]:
    n, header, body = _header(good)
    meta = header["__metadata__"]
    raw = good.read_bytes()
    out = {
        "header length 2**62": struct.pack("<Q", 2**62) + raw[8:],
        "header length past the end": struct.pack("<Q", len(raw)) + raw[8:],
        "header not JSON": struct.pack("<Q", 16) + b"{not json at all" + body,
        "truncated body": raw[: 8 + n + len(body) // 2],
        "truncated header": raw[: 8 + n // 2],
        "8 bytes": raw[:8],
        "empty": b"",
        "offsets outside the file": _with_header(
            {**header, next(k for k in header if k != "__metadata__"): {
                **header[next(k for k in header if k != "__metadata__")], "data_offsets": [0, 10**12]}}, body),
    }

    def meta_with(**kw):
        m = dict(meta)
        for k, v in kw.items():
            if v is None:
                m.pop(k, None)
            else:
                m[k] = v
        return _with_header({**header, "__metadata__": m}, body)

    out.update({
        "no lanfer metadata": meta_with(format=None),
        "newer format version": meta_with(format_version="99"),
        "unknown architecture": meta_with(model=json.dumps({"name": "vit_huge", "num_classes": 3}), arch="vit_huge"),
        "another class count": meta_with(classes=json.dumps(["a", "b", "c", "d", "e"]),
                                         model=json.dumps({"name": "lan_resnet18", "num_classes": 5,
                                                           "head_widths": [8, 8, 8]})),
        "another architecture (baseline record, LAN tensors)": meta_with(
            model=json.dumps({"name": "resnet18", "num_classes": 3}), arch="resnet18"),
        "a head of 10**6 channels": meta_with(model=json.dumps({"name": "lan_resnet18", "num_classes": 3,
                                                                 "head_widths": [10**6, 8, 8]})),
        "an input of 10**6 pixels a side": meta_with(image_size="1000000"),
        "class names not a list": meta_with(classes=json.dumps("abc")),
        "repeated class names": meta_with(classes=json.dumps(["a", "a", "b"])),
        "crop margin 1e9": meta_with(crop=json.dumps({"kind": "template", "margin": 1e9})),
    })
    return out


def test_malformed_model_files_are_refused_with_the_file_and_what_was_expected(model_file, tmp_path, capsys):
    cases = _bad_model_files(model_file, tmp_path)
    assert len(cases) == 18
    for what, data in cases.items():
        path = tmp_path / f"{what.replace(' ', '_').replace('*', '')}.safetensors"
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            load_model(path)
        assert str(path) in str(e.value), what
        err = _cli_error(["export", path, "--out", tmp_path / "x.onnx", "--no-check"], capsys)
        assert str(path) in err, what
    # and the good file still loads (the cases differ from it only where they say)
    load_model(model_file)


def test_class_count_and_architecture_messages_say_what_differs(model_file, tmp_path):
    cases = _bad_model_files(model_file, tmp_path)
    p = tmp_path / "k5.safetensors"
    p.write_bytes(cases["another class count"])
    with pytest.raises(CheckpointError, match=r"shape mismatches: .*file \(3,.*vs model \(5,"):
        load_model(p)
    p.write_bytes(cases["unknown architecture"])
    with pytest.raises(CheckpointError, match="architecture 'vit_huge'; this lanfer builds lan_resnet18, resnet18"):
        load_model(p)
    p.write_bytes(cases["another architecture (baseline record, LAN tensors)"])
    with pytest.raises(CheckpointError, match=r"unexpected keys \(\d+\): head\."):
        load_model(p)


def test_training_state_of_the_wrong_shape_is_named(tmp_path):
    p = tmp_path / "last.ckpt"
    for state, what in [([1, 2, 3], "holds a list"),
                        ({"model": {}, "optimizer": [1], "scheduler": {}, "epoch": 1, "step": 1, "best": 0.5},
                         "'optimizer' entry is not a dict"),
                        ({"model": {}, "optimizer": {}, "epoch": 1}, "lacks 'scheduler', 'step', 'best'"),
                        ({"model": {"w": 1}, "optimizer": {}, "scheduler": {}, "epoch": 1, "step": 1, "best": 0.5},
                         "not a state dict of tensors"),
                        ({"model": {}, "optimizer": {}, "scheduler": {}, "epoch": True, "step": 1, "best": 0.5},
                         "'epoch' entry")]:
        save_training_state(p, state)
        with pytest.raises(CheckpointError, match=what):
            load_training_state(p)
    p.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(CheckpointError, match="last.ckpt: cannot be loaded"):
        load_training_state(p)


def _guidance(h=2, w=2, c=512):
    g = torch.Generator().manual_seed(0)
    return Guidance(centers=torch.randn(h * w, 2, c, generator=g), attentive=torch.zeros(h * w, dtype=torch.long),
                    counts=torch.ones(h * w, 2, dtype=torch.long), inertia=torch.zeros(h * w, dtype=torch.float64),
                    height=h, width=w, meta={"n": 2})


def test_guidance_files_that_lie(tmp_path):
    from safetensors.torch import save_file

    good = _guidance().save(tmp_path / "g.safetensors")
    assert Guidance.load(good).path == str(good)
    t = {"centers": torch.zeros(4, 2, 512), "attentive": torch.zeros(4, dtype=torch.long),
         "counts": torch.ones(4, 2, dtype=torch.long), "inertia": torch.zeros(4, dtype=torch.float64)}
    md = {"format": "lanfer.guidance", "format_version": "1", "height": "2", "width": "2", "meta": "{}"}
    bad = {
        "lattice 10**6": ({**md, "height": str(10**6)}, t, "lattice of 1..1024"),
        "lattice vs tensors": ({**md, "height": "3"}, t, "consistent guidance map for 3x2"),
        "meta not an object": ({**md, "meta": "[1]"}, t, "meta of type list"),
        "NaN centres": (md, {**t, "centers": torch.full((4, 2, 512), float("nan"))}, "NaN/inf centres"),
        "attentive 7": (md, {**t, "attentive": torch.full((4,), 7, dtype=torch.long)}, "other than 0/1"),
        "a model file": ({"format": "lanfer"}, t, "not a lanfer guidance file"),
    }
    for what, (meta, tensors, message) in bad.items():
        p = tmp_path / f"{what.replace(' ', '_')}.safetensors"
        save_file(tensors, str(p), metadata=meta)
        with pytest.raises(GuidanceError, match=message) as e:
            Guidance.load(p)
        assert str(p) in str(e.value), what
    p = tmp_path / "trunc.safetensors"
    p.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(GuidanceError, match="trunc.safetensors.*truncated"):
        Guidance.load(p)


def test_guidance_lattice_that_does_not_match_the_model_stops_training_with_one_line(tmp_path, capsys):
    # 64 px images give a 2x2 F_o; a 3x3 guidance file belongs to 96 px inputs
    data = make_imagefolder(tmp_path / "data", per_class=2, size=32)
    g = _guidance(3, 3).save(tmp_path / "g33.safetensors")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {{name: lan_resnet18, head_widths: [8, 8, 8]}}\ndata: {{name: imagefolder, root: {data}, "
                   "image_size: 64, num_workers: 0}\ntrain: {epochs: 1, batch_size: 4, progress: false, "
                   f"channels_last: false}}\nguidance: {{path: {g}}}\n")
    err = _cli_error(["train", cfg, "--out", tmp_path / "run"], capsys)
    assert str(g) in err and "(C, H, W) = (512, 3, 3)" in err and "(512, 2, 2)" in err


def test_feature_store_headers_that_lie(tmp_path):
    s = FeatureStore.create(tmp_path / "f.bin", capacity=2, channels=4, height=1, width=1, dtype=np.float32)
    s.write(0, np.ones((2, 4, 1, 1), np.float32))
    s.finalize()
    header = Path(str(tmp_path / "f.bin") + ".json")
    good = json.loads(header.read_text())
    assert FeatureStore.open(tmp_path / "f.bin").n == 2
    for change, message in [({"dtype": "object"}, "not float16 or float32"), ({"dtype": "|O"}, "not float16"),
                            ({"n": 5}, "n <= capacity"), ({"height": -1}, "non-negative"),
                            ({"channels": 10**9}, "should hold"), ({"format": "x"}, "not a lanfer feature store")]:
        header.write_text(json.dumps({**good, **change}))
        with pytest.raises(GuidanceError, match=message):
            FeatureStore.open(tmp_path / "f.bin")
    header.write_text("[1, 2")
    with pytest.raises(GuidanceError, match="not a feature store header"):
        FeatureStore.open(tmp_path / "f.bin")


def test_config_unknown_keys_suggest_the_nearest_and_yaml_is_safe(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  learning_rate: 0.1\n  epoch: 3\n")
    with pytest.raises(ConfigError,
                       match=r"c.yaml: unknown config key 'train.epoch' \(did you mean 'train.epochs'\?\)"):
        load_config(p)
    p.write_text("trian:\n  lr: 0.1\n")
    err = _cli_error(["train", p, "--out", tmp_path / "r"], capsys)
    assert "did you mean 'train'?" in err
    p.write_text("train: {lr: .nan}\n")
    with pytest.raises(ConfigError, match="train.lr=nan must be a finite number"):
        load_config(p)
    # aliases are fine (safe_load builds each once), and tags that name Python objects are refused
    p.write_text("a: &x [1, 2]\ndata: {classes: *x}\n")
    with pytest.raises(ConfigError, match="unknown config key 'a'"):
        load_config(p)
    for tag in ("!!python/object:os.system", "!!python/name:os.system", "!!python/object/new:dict"):
        p.write_text(f"model: {tag} {{}}\n")
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config(p)


def _onnx_graph(size: int, k: int, meta: dict[str, str]) -> bytes:
    """A tiny hand-built graph (global average pool, then a 3 x k matrix) with the given lanfer record."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3, k), np.float32), "w")
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["logits"])]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])
    graph = helper.make_graph(nodes, "g", [image], [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                                                  ["N", k])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def test_onnx_graph_that_does_not_match_its_record_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    from lanfer.info import ModelInfo
    from lanfer.predict import Predictor

    meta = ModelInfo(arch="resnet18", classes=CLASSES, input_size=32).to_metadata()
    good = tmp_path / "good.onnx"
    good.write_bytes(_onnx_graph(32, 3, meta))
    assert Predictor.from_onnx(good, detector=None).classes == CLASSES
    for name, size, k, message in [("size.onnx", 64, 3, r"says one image input of \(N, 3, 32, 32\)"),
                                   ("classes.onnx", 32, 5, "do not give the 3 logits")]:
        p = tmp_path / name
        p.write_bytes(_onnx_graph(size, k, meta))
        with pytest.raises(CheckpointError, match=rf"{p}: .*{message}"):
            Predictor.from_onnx(p, detector=None)
