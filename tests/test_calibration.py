"""Calibration and class priors (issue 22): the record's fields, the one probability function in every output
path, and the fitting.

References: a FERNet whose classifier weights are zero, so that its logits are its bias whatever the face, and
the probabilities are a hand computation ``softmax((b - tau log prior) / T)`` written out with ``math`` here;
scipy's bounded scalar minimiser and a grid for the temperature; a hand-counted ECE; sklearn's log loss.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import lanfer
from lanfer.model import load_model
from lanfer.calibration import (adjust_logits, choose_prior_tau, expected_calibration_error, fit_temperature,
                                probabilities, reliability)
from lanfer.checkpoint import CheckpointError, read_model_info, read_weights, save_model
from lanfer.info import InfoError, ModelInfo

CLASSES = ["a", "b", "c"]
BIAS = [1.0, 0.5, 0.0]  # the raw argmax is "a"; with tau = 1 against PRIOR the adjusted argmax is "c"
PRIOR = [0.6, 0.3, 0.1]
TAU, T = 1.0, 2.0
SIZE = 64


def hand(bias=BIAS, prior=PRIOR, tau=TAU, t=T) -> list[float]:
    z = [(b - tau * math.log(p)) / t for b, p in zip(bias, prior)]
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def _info(**kw) -> dict:
    return {"model": {"name": "lan_resnet18", "num_classes": 3, "head_widths": [16, 8, 4]}, "classes": CLASSES,
            "image_size": SIZE, "normalize": "imagenet", "temperature": T, "class_prior": PRIOR, "prior_tau": TAU,
            **kw}


def constant_model() -> torch.nn.Module:
    """A LAN model whose logits are BIAS for every input (its classifier's weights are zero)."""
    torch.manual_seed(0)
    m = lanfer.create_model("lan_resnet18", num_classes=3, head_widths=(16, 8, 4)).eval()
    with torch.no_grad():
        m.fc.weight.zero_()
        m.fc.bias.copy_(torch.tensor(BIAS))
    return m


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("cal") / "cal.safetensors", constant_model(), _info())


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3)]


def _folder(root, counts: dict[str, dict[str, int]]):
    """root/<split>/<class>/<i>.png with counts[split][class] noise images."""
    rng = np.random.default_rng(1)
    for split, per in counts.items():
        for c, n in per.items():
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    return root


# -- the record ----------------------------------------------------------------------------------------------


def test_fields_go_through_the_codec_and_old_files_load_uncalibrated(ckpt, tmp_path):
    info = read_model_info(ckpt)
    assert (info.temperature, info.class_prior, info.prior_tau) == (T, PRIOR, TAU)
    assert ModelInfo.from_metadata(info.to_metadata()) == info
    # a file written before these fields existed: the same header without them
    from safetensors.torch import save_file

    meta = {k: v for k, v in info.to_metadata().items() if k not in ("temperature", "class_prior", "prior_tau")}
    old = tmp_path / "old.safetensors"
    save_file(read_weights(ckpt), str(old), metadata=meta)
    model, old_info = load_model(old)
    assert (old_info.temperature, old_info.class_prior, old_info.prior_tau) == (1.0, None, 0.0)
    logits = torch.tensor([BIAS])
    assert torch.allclose(probabilities(logits, old_info), torch.softmax(logits, 1))


@pytest.mark.parametrize("field,value,says", [
    ("temperature", 0.0, "temperature=0.0"), ("temperature", -1.5, "temperature=-1.5"),
    ("temperature", float("nan"), "temperature=nan"), ("temperature", "hot", "temperature='hot'"),
    ("class_prior", [0.5, 0.5], "class_prior=[0.5, 0.5]"), ("class_prior", [0.5, 0.3, 0.1], "sums to 0.9"),
    ("class_prior", [0.5, float("nan"), 0.5], "class_prior=[0.5, nan, 0.5]"),
    ("class_prior", [0.7, 0.3, 0.0], "positive"), ("prior_tau", -5.0, "prior_tau=-5.0"), ("prior_tau", 4.5, "prior_tau=4.5"),
    ("prior_tau", float("inf"), "prior_tau=inf"),
])
def test_bad_values_are_refused_naming_the_file_and_value(field, value, says):
    meta = ModelInfo.from_metadata({"format": "lanfer", **{k: json.dumps(v) for k, v in _info().items()}}).to_metadata()
    meta[field] = json.dumps(value)
    with pytest.raises(InfoError, match="bad.safetensors") as e:
        ModelInfo.from_metadata(meta, "bad.safetensors")
    assert says in str(e.value)
    # a tau without a prior
    meta = {"format": "lanfer", **{k: json.dumps(v) for k, v in _info(class_prior=None).items()}}
    with pytest.raises(InfoError, match="bad.safetensors: prior_tau=1 needs a class_prior"):
        ModelInfo.from_metadata(meta, "bad.safetensors")


# -- the one function ----------------------------------------------------------------------------------------


def test_probabilities_are_the_hand_computation_in_torch_and_numpy():
    info = ModelInfo.from_metadata({"format": "lanfer", **{k: json.dumps(v) for k, v in _info().items()}})
    for logits in (torch.tensor([BIAS, BIAS]), np.array([BIAS, BIAS])):
        p = np.asarray(probabilities(logits, info))
        assert np.allclose(p, [hand()] * 2, atol=1e-6)
        assert np.allclose(np.asarray(probabilities(logits, info, tau=0.0)), [hand(tau=0.0)] * 2, atol=1e-6)
        assert np.allclose(np.asarray(adjust_logits(logits, info))[0], [b - math.log(p) for b, p in zip(BIAS, PRIOR)])
    assert np.argmax(hand()) == 2 and np.argmax(hand(tau=0.0)) == 0
    uncal = ModelInfo.from_metadata({"format": "lanfer", **{k: json.dumps(v) for k, v in _info(
        class_prior=None, prior_tau=0, temperature=1).items()}})
    with pytest.raises(InfoError, match="records none"):
        probabilities(torch.tensor([BIAS]), uncal, tau=0.5)


def test_a_negative_tau_moves_back_towards_the_prior_by_hand():
    """A model trained with a logit-adjusted loss has balanced raw logits; tau -1 gives back the plain classifier
    (logits + log prior), and the record and --prior-tau accept it within [-4, 4]."""
    from lanfer.calibrate import parse_prior_tau
    from lanfer.calibration import tau_grid

    info = ModelInfo.from_metadata({"format": "lanfer", **{k: json.dumps(v) for k, v in _info(prior_tau=-1.0).items()}})
    assert info.prior_tau == -1.0
    p = np.asarray(probabilities(np.array([BIAS]), info))[0]
    assert np.allclose(p, hand(tau=-1.0), atol=1e-6)
    assert np.allclose(np.asarray(adjust_logits(np.array([BIAS]), info))[0],
                       [b + math.log(q) for b, q in zip(BIAS, PRIOR)], atol=1e-9)
    assert parse_prior_tau("-0.3") == -0.3
    with pytest.raises(ValueError, match="-4"):
        parse_prior_tau("-4.5")
    assert tau_grid(-0.3) == (-0.3, -0.2, -0.1, 0.0, *[round(0.1 * i, 1) for i in range(1, 21)])
    assert tau_grid() == tuple(round(0.1 * i, 1) for i in range(21))
    for bad in ((1.0, 0.0), (-5.0, 2.0), (float("nan"), 2.0)):
        with pytest.raises(ValueError, match="tau range"):
            tau_grid(*bad)


def test_python_api_applies_the_operating_point_once(ckpt, crops):
    from lanfer.predict import Predictor

    for tau, want in ((None, hand()), (0.0, hand(tau=0.0)), (0.5, hand(tau=0.5))):
        p = Predictor.from_checkpoint(ckpt, device="cpu", detector=None, prior_tau=tau)
        table = p.predict(crops, detect=False, progress=False)
        got = table[[f"prob_{c}" for c in CLASSES]].to_numpy(dtype=float)
        assert np.allclose(got, [want] * len(crops), atol=1e-5)
        assert list(table["label"]) == [CLASSES[int(np.argmax(want))]] * len(crops)


def test_cli_table_and_prior_tau_flag(ckpt, crops, tmp_path, capsys):
    import pandas as pd

    from lanfer.cli import main

    Image.fromarray(crops[0]).save(tmp_path / "face.png")
    for flags, want in (([], hand()), (["--prior-tau", "0"], hand(tau=0.0))):
        out = tmp_path / f"out{len(flags)}"
        assert main(["predict", str(ckpt), str(tmp_path / "face.png"), "--no-detect", "--no-progress",
                     "--out", str(out), *flags]) == 0
        row = pd.read_csv(out / "predictions.csv").iloc[0]
        assert np.allclose([row[f"prob_{c}"] for c in CLASSES], want, atol=1e-5)
        assert row["label"] == CLASSES[int(np.argmax(want))]
    capsys.readouterr()
    # a model file without a prior cannot move its operating point: a one-line error
    plain = save_model(tmp_path / "plain.safetensors", constant_model(), _info(class_prior=None, prior_tau=0))
    assert main(["predict", str(plain), str(tmp_path / "face.png"), "--no-detect", "--no-progress",
                 "--out", str(tmp_path / "o"), "--prior-tau", "1"]) == 2
    assert "records none" in capsys.readouterr().err


def test_serve_json_applies_the_operating_point_once(ckpt, crops):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    import io

    from fastapi.testclient import TestClient

    from lanfer.faces import Face
    from lanfer.predict import Predictor
    from lanfer.serve import ServeConfig, create_app

    class OneFace:  # a detector that finds the same face in every picture
        def detect(self, images):
            marks = np.array([[38, 45], [62, 45], [50, 58], [40, 70], [60, 70]], float)
            return [[Face((20.0, 20.0, 80.0, 90.0), 0.99, marks)] for _ in images]

    buf = io.BytesIO()
    Image.fromarray(np.kron(crops[0], np.ones((2, 2, 1), np.uint8))).save(buf, format="PNG")  # 128 x 128
    for tau, want in ((None, hand()), (0.0, hand(tau=0.0))):
        predictor = Predictor.from_checkpoint(ckpt, device="cpu", detector=OneFace(), prior_tau=tau)
        with TestClient(create_app(predictor, ServeConfig())) as client:
            r = client.post("/v1/predict", files=[("files", ("f.png", buf.getvalue(), "image/png"))])
            assert r.status_code == 200, r.text
            row = r.json()["rows"][0]
            assert np.allclose([row[f"prob_{c}"] for c in CLASSES], want, atol=1e-5)
            assert row["label"] == CLASSES[int(np.argmax(want))]
            op = client.get("/v1/models").json()["models"][0]["operating_point"]
            assert op == {"temperature": T, "prior_tau": TAU if tau is None else tau}


def test_onnx_graph_and_runner_apply_the_operating_point_once(ckpt, crops, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from lanfer.export import export_onnx
    from lanfer.predict import Predictor

    report = export_onnx(ckpt, tmp_path / "cal.onnx")
    assert report["outputs"] == ["logits", "attention", "probabilities"]
    assert report["parity"]["random"]["probabilities"] < 1e-5
    session = ort.InferenceSession(str(tmp_path / "cal.onnx"), providers=["CPUExecutionProvider"])
    logits, _, probs = session.run(None, {"image": np.random.default_rng(0).normal(size=(2, 3, SIZE, SIZE))
                                          .astype(np.float32)})
    assert np.allclose(logits, [BIAS] * 2, atol=1e-5) and np.allclose(probs, [hand()] * 2, atol=1e-5)
    info = Predictor.from_onnx(tmp_path / "cal.onnx", detector=None).info  # the fields travel in metadata_props
    assert (info.temperature, info.class_prior, info.prior_tau) == (T, PRIOR, TAU)
    for tau, want in ((None, hand()), (0.0, hand(tau=0.0)), (-0.5, hand(tau=-0.5))):  # the default ships at -0.5
        p = Predictor.from_onnx(tmp_path / "cal.onnx", detector=None, prior_tau=tau)
        got = p.predict(crops, detect=False, progress=False)[[f"prob_{c}" for c in CLASSES]].to_numpy(dtype=float)
        assert np.allclose(got, [want] * len(crops), atol=1e-5)


def test_evaluate_reports_the_ece_of_the_operating_point(ckpt, tmp_path):
    from lanfer.evaluate import evaluate_checkpoint

    root = _folder(tmp_path / "data", {"test": {"a": 2, "b": 1, "c": 3}})
    for tau, want in ((None, hand()), (0.0, hand(tau=0.0))):
        m = evaluate_checkpoint(ckpt, data="imagefolder", root=str(root), split="test", device="cpu",
                                num_workers=0, progress=False, prior_tau=tau, out=tmp_path / "m.json")
        k = int(np.argmax(want))
        acc = [2, 1, 3][k] / 6  # every face gets class k at confidence max(want): one bin, ECE = |acc - conf|
        assert m["accuracy"] == pytest.approx(acc)
        assert m["ece"] == pytest.approx(abs(acc - max(want)), abs=1e-6)
        assert json.loads((tmp_path / "m.json").read_text())["calibration"]["prior_tau"] == (TAU if tau is None else 0)


def test_cam_reports_the_probability_and_class_of_the_operating_point(ckpt, crops, tmp_path):
    from lanfer.analysis.cam import run_cam

    Image.fromarray(crops[0]).save(tmp_path / "face.png")
    run_cam([tmp_path / "face.png"], tmp_path / "cam", models=[ckpt])
    rec = json.loads((tmp_path / "cam" / "cam.json").read_text())[0]
    assert rec["pred"] == "c" == rec["cam_class"] and rec["p_pred"] == pytest.approx(max(hand()), abs=1e-5)


# -- fitting -------------------------------------------------------------------------------------------------


def test_ece_against_a_hand_count():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.3, 0.7], [0.45, 0.55], [0.5, 0.5]])
    labels = np.array([0, 1, 1, 0, 0])
    # confidences 0.95, 0.9 (bin 14 of 15: (0.8667, 0.9333] holds 0.9; 0.95 is in bin 15), 0.7 (bin 11),
    # 0.55 (bin 9), 0.5 (bin 8: (0.4667, 0.5333]); hits 1, 0, 1, 0, 1
    want = (abs(1 - 0.95) + abs(0 - 0.9) + abs(1 - 0.7) + abs(0 - 0.55) + abs(1 - 0.5)) / 5
    assert expected_calibration_error(probs, labels, bins=15) == pytest.approx(want)
    # two in one bin: |mean hit - mean confidence| weighted by 2/2
    assert expected_calibration_error(np.array([[0.8, 0.2], [0.7, 0.3]]), np.array([0, 1]), bins=2) == \
        pytest.approx(abs(0.5 - 0.75))
    assert sum(b["n"] for b in reliability(probs, labels)) == 5


def test_fit_temperature_matches_a_bounded_minimiser_and_a_grid():
    from scipy.optimize import minimize_scalar
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(600, 5)) * 3
    true_p = torch.softmax(torch.tensor(logits) / 2.5, 1).numpy()
    labels = np.array([rng.choice(5, p=p) for p in true_p])

    def loss(t):
        return log_loss(labels, torch.softmax(torch.tensor(logits) / t, 1).numpy(), labels=range(5))

    t = fit_temperature(logits, labels)
    ref = minimize_scalar(loss, bounds=(0.05, 20), method="bounded", options={"xatol": 1e-6}).x
    grid = np.linspace(0.5, 6, 1101)
    assert t == pytest.approx(ref, rel=1e-3)
    assert abs(t - grid[np.argmin([loss(g) for g in grid])]) <= 0.006
    assert 1.8 < t < 3.4  # the labels were drawn at temperature 2.5


def test_choose_prior_tau_picks_the_smallest_tau_meeting_the_floor_else_the_best_mean_class_accuracy():
    prior = np.array([0.7, 0.2, 0.1])
    # class 2's faces score 1.5 below class 0: tau log(0.7 / 0.1) = 1.95 tau must exceed 1.5 (tau > 0.77);
    # class 0's faces are lost above tau = 3 / 1.95 = 1.54
    logits = np.array([[3.0, 0.0, 0.0]] * 5 + [[0.0, 2.0, 0.0]] * 5 + [[2.0, 0.0, 0.5]] * 5)
    labels = np.array([0] * 5 + [1] * 5 + [2] * 5)
    got = choose_prior_tau(logits, labels, prior, taus=[0, 0.5, 0.8, 1.0, 1.5], min_recall=0.4, classes=CLASSES)
    assert got["tau"] == 0.8 and got["rule"].startswith("smallest tau")
    rows = {r["tau"]: r for r in got["table"]}
    assert rows[0.0]["per_class_recall"]["c"] == 0 and rows[0.8]["min_class_recall"] == 1.0
    assert rows[1.5]["min_class_recall"] == 1.0 and rows[0.5]["accuracy"] == pytest.approx(2 / 3)
    # unreachable floor: the best mean class accuracy, smallest tau among equals
    never = choose_prior_tau(logits, labels, prior, taus=[0, 0.5, 0.8, 1.0], min_recall=1.01)
    best = max(r["mean_class_accuracy"] for r in never["table"])
    assert never["tau"] == min(r["tau"] for r in never["table"] if r["mean_class_accuracy"] == best)
    assert never["rule"].startswith("no tau")


# -- lanfer calibrate and lanfer ship --calibrate --------------------------------------------------------------


def test_calibrate_writes_a_new_file_with_the_prior_tau_and_temperature(tmp_path, capsys):
    from scipy.optimize import minimize_scalar
    from sklearn.metrics import log_loss

    from lanfer.cli import main

    # train prior 6:3:1; the val faces all get the same logits, so T is the one that best fits 1:1:2 labels
    root = _folder(tmp_path / "data", {"train": {"a": 6, "b": 3, "c": 1}, "val": {"a": 1, "b": 1, "c": 2}})
    plain = save_model(tmp_path / "plain.safetensors", constant_model().half(),
                       _info(class_prior=None, prior_tau=0, temperature=1))
    out = tmp_path / "calibrated.safetensors"
    assert main(["calibrate", str(plain), "--data", "imagefolder", "--root", str(root), "--out", str(out),
                 "--prior-tau", "1", "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "prior tau 1 (given)" in printed and "ECE on val" in printed
    info = read_model_info(out)
    assert info.class_prior == pytest.approx(PRIOR) and info.prior_tau == 1.0
    labels = [0, 1, 2, 2]
    z = np.array([[b - math.log(p) for b, p in zip(BIAS, PRIOR)]] * 4)

    def loss(t):
        return log_loss(labels, torch.softmax(torch.tensor(z) / t, 1).numpy(), labels=range(3))

    assert info.temperature == pytest.approx(minimize_scalar(loss, bounds=(0.05, 50), method="bounded").x, rel=1e-3)
    assert all(v.dtype == torch.float16 for v in read_weights(out).values() if v.is_floating_point())
    rec = json.loads(out.with_suffix(".calibration.json").read_text())
    assert rec["class_counts"] == [6, 3, 1] and rec["dataset"]["split"] == "val"
    assert rec["temperature"] == info.temperature
    assert rec["fitted_on"]["calibrated"]["nll"] <= rec["fitted_on"]["adjusted_T1"]["nll"] + 1e-9
    assert {r["tau"] for r in rec["tau_table"]} >= {0.0, 1.0}
    assert read_model_info(plain).temperature == 1.0  # the input is untouched
    # never over the input unless asked
    assert main(["calibrate", str(plain), "--data", "imagefolder", "--root", str(root), "--out", str(plain),
                 "--no-progress"]) == 2
    assert "would overwrite" in capsys.readouterr().err


def test_ship_calibrates_its_own_file(tmp_path):
    from lanfer.ship import ship

    root = _folder(tmp_path / "data", {"train": {"a": 6, "b": 3, "c": 1}, "val": {"a": 1, "b": 1, "c": 2}})
    plain = save_model(tmp_path / "best.safetensors", constant_model(), _info(class_prior=None, prior_tau=0,
                                                                              temperature=1))
    out = ship(plain, tmp_path / "shipped.safetensors",
               calibrate=dict(data="imagefolder", root=str(root), prior_tau="auto", device="cpu", progress=False))
    info = read_model_info(out)
    assert info.class_prior == pytest.approx(PRIOR) and info.temperature != 1.0
    assert info.metrics["calibration"]["split"] == "val"
    assert out.with_suffix(".calibration.json").is_file()
    with pytest.raises(CheckpointError):
        read_model_info(tmp_path / "missing.safetensors")


def test_record_evaluations_puts_the_operating_points_numbers_in_the_record(tmp_path):
    from lanfer.ship import record_evaluations

    info = _info(class_prior=None, prior_tau=0, temperature=1.5)
    path = save_model(tmp_path / "m.safetensors", constant_model().half(), info)
    before = read_weights(path)
    (tmp_path / "e.json").write_text(json.dumps({"accuracy": 0.8, "mean_class_accuracy": 0.7,
                                                  "confusion_matrix": [[3, 1], [1, 5]]}))
    record_evaluations(path, {"test": tmp_path / "e.json", "test_tau0": tmp_path / "e.json"})
    got = read_model_info(path)
    assert got.metrics["test"] == {"accuracy": 0.8, "mean_class_accuracy": 0.7, "n": 10}
    assert "test_tau0" in got.metrics and got.temperature == 1.5  # the rest of the record is kept
    after = read_weights(path)
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    with pytest.raises(CheckpointError, match="no such metrics file"):
        record_evaluations(path, {"x": tmp_path / "missing.json"})


def test_report_draws_the_reliability_diagram_of_a_runs_metrics(tmp_path):
    from lanfer.analysis.report import write_report
    from lanfer.evaluate import calibration_summary, summarize

    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    targets = np.array([0, 1, 2, 2])
    metrics = {**summarize(targets, probs.argmax(1), CLASSES), **calibration_summary(targets, probs)}
    assert metrics["ece"] == pytest.approx(expected_calibration_error(probs, targets))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(metrics))
    html = write_report([run], tmp_path / "report.html").read_text()
    assert "<h2>Calibration</h2>" in html and "alt='reliability'" in html
    assert f"<td>{100 * metrics['ece']:.2f}</td>" in html  # the ECE column of the metrics table
