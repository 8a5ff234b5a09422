"""Predictor: faces in synthetic and real photos, aligned crops, videos streamed frame by frame, bad inputs,
the result table, the ONNX backend and the ``lanfer predict`` command.

References: the synthetic renderer's own landmarks and yaw for detection and pose; a hand-written
normalisation plus a direct model call for the probabilities; ``cv2.VideoCapture`` counters for streaming;
the face-api demo photos (counted by a person, see test_faces.py) for real pictures.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import lanfer
from lanfer.checkpoint import CheckpointError, save_model
from lanfer.faces import Face, align_face, get_detector
from lanfer.predict import PredictionTable, Predictor, annotate, summarize

cv2 = pytest.importorskip("cv2")

CLASSES = ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
SIZE = 64
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _info(name="lan_resnet18"):
    return {"model": {"name": name, "num_classes": 7, "head_widths": [16, 8, 4]}, "classes": CLASSES,
            "image_size": SIZE, "normalize": "imagenet"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = lanfer.create_model("lan_resnet18", num_classes=7, head_widths=(16, 8, 4)).eval()
    # Random BatchNorm statistics, so that the logits are far from uniform and depend on the input.
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("ckpt") / "best.safetensors", model, _info())


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor.from_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def two_faces():
    """Two synthetic faces (yaw 0 and 25 degrees) pasted side by side, with the renderer's landmarks."""
    synth = pytest.importorskip("lanfer.data.synth")
    canvas = np.full((200, 360, 3), 140, np.uint8)
    truth = []
    for i, (yaw, x0) in enumerate([(0.0, 10), (25.0, 190)]):
        img, marks = synth.render_face(synth.FaceParams(identity=synth.sample_identity(0, i)), yaw=yaw, size=160)
        canvas[20:180, x0:x0 + 160] = np.asarray(img)
        lm = np.array([marks[k][:2] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")])
        truth.append((yaw, lm + [x0, 20]))
    return canvas, truth


def _hand_probs(model, crops):
    """Softmax of the model on crops normalised by hand (no EvalPreset): the independent reference."""
    x = np.stack([(c / 255.0 - MEAN) / STD for c in crops]).transpose(0, 3, 1, 2)  # (N, 3, S, S)
    with torch.no_grad():
        out = model(torch.tensor(x, dtype=torch.float32), return_maps=True)
    return torch.softmax(out.logits, 1).numpy(), out.attention[:, 0].numpy()


def test_two_synthetic_faces_give_two_rows(predictor, model, two_faces):
    image, truth = two_faces
    table = predictor.predict(image, progress=False, return_attention=True)
    assert isinstance(table, PredictionTable) and len(table) == 2
    assert (table["status"] == "ok").all() and (table["frame"] == 0).all() and list(table["face"]) == [0, 1]
    expected_cols = ["source", "frame", "face", "x1", "y1", "x2", "y2", "score", "yaw", "pitch", "roll", "label",
                     *[f"prob_{c}" for c in CLASSES], "status", "attention"]
    assert all(c in table.columns for c in expected_cols)
    for yaw, lm in truth:
        # the row whose landmarks match this face: within 8% of the face's inter-ocular distance ... of the renderer's
        lms = table[[f"{n}_{c}" for n in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
                     for c in ("x", "y")]].to_numpy().reshape(-1, 5, 2)
        err = np.abs(lms - lm).max(axis=(1, 2))
        row = table.iloc[int(err.argmin())]
        iod = np.linalg.norm(lm[1] - lm[0])
        assert err.min() < 0.25 * iod, err
        assert row["x1"] <= lm[:, 0].min() and row["x2"] >= lm[:, 0].max()
        assert abs(row["yaw"] - yaw) < 12, (row["yaw"], yaw)
    probs = table.probabilities.to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert list(table["label"]) == [CLASSES[k] for k in probs.argmax(1)]
    # the same numbers as the model on the aligned crops, normalised by hand
    crops = [align_face(image, lms_row.reshape(5, 2), size=SIZE) for lms_row in
             table[[c for c in table.columns if c.endswith(("_x", "_y"))]].to_numpy()]
    ref, att = _hand_probs(model, crops)
    assert np.abs(probs - ref).max() < 1e-5
    assert np.abs(np.stack(table["attention"]) - att).max() < 1e-5
    assert table["attention"].iloc[0].shape == (SIZE // 32, SIZE // 32)


def test_batching_does_not_mix_faces(predictor, two_faces):
    image, _ = two_faces
    flipped = np.ascontiguousarray(image[:, ::-1])
    one = predictor.predict([image, flipped], batch_size=1, progress=False)
    many = predictor.predict([image, flipped], batch_size=3, window=1, progress=False)  # a batch spans images
    assert len(one) == len(many) == 4
    assert one["source"].tolist() == ["array:0"] * 2 + ["array:1"] * 2
    cols = [f"prob_{c}" for c in CLASSES]
    # Float32 convolutions pick other kernels for other batch sizes (seen: 1.5e-5 apart); faces mixed up
    # between batch slots would differ by far more (these two faces' probabilities differ by ~1e-2).
    diff = np.abs(one[cols].to_numpy() - many[cols].to_numpy()).max()
    assert diff < 1e-4
    assert np.abs(one[cols].to_numpy()[0] - one[cols].to_numpy()[1]).max() > 10 * diff
    # each face of the mirrored picture is found at the mirrored place; the turned one has the opposite yaw
    orig, mirr = one.iloc[0:2], one.iloc[2:4]
    centre = lambda t: ((t["x1"] + t["x2"]) / 2).to_numpy()  # noqa: E731
    for c, yaw in zip(centre(orig), orig["yaw"]):
        j = int(np.argmin(np.abs(centre(mirr) - (image.shape[1] - 1 - c))))
        assert abs(centre(mirr)[j] - (image.shape[1] - 1 - c)) < 10
        if abs(yaw) > 10:
            assert abs(mirr["yaw"].iloc[j] + yaw) < 8, (yaw, mirr["yaw"].iloc[j])


def test_no_detect_classifies_whole_crops(checkpoint, model, tmp_path):
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3)]
    for i, c in enumerate(crops):
        Image.fromarray(c).save(tmp_path / f"crop{i}.png")
    (tmp_path / "notes.txt").write_text("ignored: not an image")
    p = Predictor.from_checkpoint(checkpoint, detector=None)
    table = p.predict(tmp_path, detect=False, progress=False, batch_size=2)
    assert len(table) == 3 and (table["status"] == "ok").all()
    assert table[["x1", "y1"]].eq(0).all().all() and table[["x2", "y2"]].eq(SIZE).all().all()
    assert table[["score", "yaw", "pitch", "roll", "nose_x"]].isna().all().all()
    ref, _ = _hand_probs(model, crops)
    assert np.abs(table.probabilities.to_numpy() - ref).max() < 1e-5
    with pytest.raises(ValueError, match="no face detector"):
        p.predict(tmp_path, detect=True)


def test_bad_inputs_get_a_status_and_the_run_goes_on(predictor, two_faces, tmp_path):
    image, _ = two_faces
    good = tmp_path / "good.png"
    Image.fromarray(image).save(good)
    (tmp_path / "text.jpg").write_text("this is not a picture")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(tmp_path / "blank.png")
    (tmp_path / "empty").mkdir()
    inputs = [tmp_path / "missing.png", tmp_path / "text.jpg", tmp_path / "broken.mp4", tmp_path / "blank.png",
              tmp_path / "empty", np.zeros((10, 10), np.uint8), good]
    table = predictor.predict(inputs, progress=False)
    status = dict(zip(table["source"], table["status"]))
    assert status[str(tmp_path / "missing.png")] == "error: file not found"
    text_status = status[str(tmp_path / "text.jpg")]
    assert text_status.startswith("error:") and "could not be decoded" in text_status
    assert status[str(tmp_path / "broken.mp4")].startswith("error: cannot open video")
    assert status[str(tmp_path / "blank.png")] == "no face"
    assert "no images" in status[str(tmp_path / "empty")]
    assert "(H, W, 3) uint8" in status["array:0"]
    assert (table["source"] == str(good)).sum() == 2
    bad = table[table["status"] != "ok"]
    assert bad[["x1", "score", "prob_happy"]].isna().all().all() and bad["label"].isna().all()
    assert "2 faces" in summarize(table)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Predictor.from_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        Predictor.from_onnx(tmp_path / "nope.onnx")


def _write_video(path, frames, fps=10):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


class _CountingCapture:
    """cv2.VideoCapture that counts the frames it has decoded (read + grab)."""

    consumed = 0
    instances: list = []

    def __init__(self, *args):
        self._cap = _REAL_CAPTURE(*args)
        _CountingCapture.instances.append(self)

    def read(self):
        out = self._cap.read()
        _CountingCapture.consumed += bool(out[0])
        return out

    def grab(self):
        ok = self._cap.grab()
        _CountingCapture.consumed += bool(ok)
        return ok

    def __getattr__(self, name):
        return getattr(self._cap, name)


_REAL_CAPTURE = cv2.VideoCapture


class _FixedDetector:
    """One face at a fixed place per frame; records how far the video had been read at each call."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []  # (frames decoded so far, images in this call)

    def detect(self, images):
        self.calls.append((_CountingCapture.consumed, len(images)))
        lm = np.array([[30.0, 40.0], [60.0, 40.0], [45.0, 55.0], [33.0, 70.0], [57.0, 70.0]])
        return [[Face((10, 10, 80, 90), 0.99, lm)] for _ in images]


def test_video_is_streamed_frame_by_frame(checkpoint, monkeypatch, tmp_path):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(30)]
    video = _write_video(tmp_path / "clip.mp4", frames)
    monkeypatch.setattr(cv2, "VideoCapture", _CountingCapture)
    _CountingCapture.consumed = 0
    detector = _FixedDetector()
    p = Predictor.from_checkpoint(checkpoint, detector=detector)
    table = p.predict(video, every_nth_frame=3, window=2, batch_size=2, progress=False)
    assert table["frame"].tolist() == list(range(0, 30, 3))
    assert (table["status"] == "ok").all() and table["source"].eq(str(video)).all()
    assert _CountingCapture.consumed == 30  # every frame decoded once, none twice
    # the detector sees frames while the video is still being read, two at a time
    assert all(n <= 2 for _, n in detector.calls) and len(detector.calls) == 5
    for k, (consumed, _) in enumerate(detector.calls):
        assert consumed <= 3 * 2 * (k + 1), detector.calls
    # at most window + max(window, batch_size) - 1 frames were held at any time, not the 10 frames kept
    assert table.attrs["max_frames_held"] <= 3
    assert table.attrs["frames"] == 10


def test_video_with_real_detector_and_overlay(predictor, two_faces, tmp_path):
    image, _ = two_faces
    frames = [np.roll(image, 2 * i, axis=1) if i < 20 else np.full_like(image, 120) for i in range(30)]
    video = _write_video(tmp_path / "faces.mp4", frames)
    out = tmp_path / "ov"
    table = predictor.predict([video], every_nth_frame=5, overlay_dir=out, progress=False, batch_size=4)
    ok = table[table["status"] == "ok"]
    assert sorted(ok["frame"].unique().tolist()) == [0, 5, 10, 15]  # frames 20 and 25 are blank
    assert ok.groupby("frame").size().eq(2).all()
    assert table[table["frame"].isin([20, 25])]["status"].eq("no face").all()
    # the faces move right by 2 px per frame: 10 px between kept frames (landmarks: steadier than boxes)
    x = ok.sort_values(["frame", "x1"]).groupby("frame")["nose_x"].first().to_numpy()
    assert (np.diff(x) > 0).all() and abs(x[-1] - x[0] - 30) < 5, x
    written = cv2.VideoCapture(str(out / "faces.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (int(written.get(cv2.CAP_PROP_FRAME_WIDTH)), int(written.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (360, 200)
    written.release()


def test_table_keeps_its_class_and_plots(predictor, two_faces):
    image, _ = two_faces
    table = predictor.predict([image, np.full((50, 60, 3), 90, np.uint8)], progress=False, return_attention=True)
    faces = table.faces()
    assert type(faces) is PredictionTable and faces.classes == CLASSES and len(faces) == 2
    assert type(table.sort_values("x1").head(1)) is PredictionTable and table.copy().classes == CLASSES
    assert type(table["label"]) is pd.Series
    fig = table.plot(0)
    assert len(fig.axes) == 1 + 2 * 2  # picture, then crop + bars per face
    assert "attention" in fig.axes[1].get_title()
    assert len(table.plot("array:1").axes) >= 1  # a picture without faces still draws, with its status


def test_annotate_draws_boxes_and_insets():
    image = np.zeros((200, 300, 3), np.uint8)
    crop = np.full((64, 64, 3), 200, np.uint8)
    probs = np.array([0.05, 0.05, 0.05, 0.7, 0.05, 0.05, 0.05])
    out = annotate(image, [dict(box=(20, 40, 100, 140), probs=probs, crop=crop, attention=np.ones((2, 2)))], CLASSES)
    assert out.shape == image.shape and image.max() == 0  # drawn on a copy
    assert (out[40:141, 20] > 0).any(axis=1).all()  # the box's left edge
    right = out[40:90, 105:250]
    assert right.max() > 0  # the inset goes right of the box, where there is room


def test_onnx_backend_matches_torch(checkpoint, model, tmp_path):
    pytest.importorskip("onnxruntime")
    from lanfer.export import export_onnx

    report = export_onnx(checkpoint, tmp_path / "lan.onnx")
    assert report["outputs"] == ["logits", "attention", "probabilities"] and report["parity"]["max_abs_diff"] < 1e-4
    p = Predictor.from_onnx(tmp_path / "lan.onnx", detector=None)
    assert p.classes == CLASSES and p.image_size == SIZE and p.backend == "onnx"
    rng = np.random.default_rng(2)
    crops = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(5)]
    table = p.predict(crops, detect=False, progress=False, return_attention=True, batch_size=3)
    ref, att = _hand_probs(model, crops)
    assert np.abs(table.probabilities.to_numpy() - ref).max() < 1e-4
    assert np.abs(np.stack(table["attention"]) - att).max() < 1e-4
    # backend="onnx" from the safetensors file exports in memory and gives the same table
    q = Predictor.from_checkpoint(checkpoint, detector=None, backend="onnx")
    t2 = q.predict(crops, detect=False, progress=False)
    assert np.abs(t2.probabilities.to_numpy() - ref).max() < 1e-4



def test_onnx_backend_runs_blazeface_in_onnx_runtime(checkpoint, two_faces):
    """backend="onnx" puts BlazeFace's network in ONNX Runtime too (built by name, lazily, or by detector_for)
    and gives the PyTorch predictor's table; MTCNN, which has no such backend, stays as it is."""
    pytest.importorskip("onnxruntime")
    from lanfer.faces import MTCNNDetector
    from lanfer.predict import detector_for

    image, _ = two_faces
    p = Predictor.from_checkpoint(checkpoint, device="cpu", backend="onnx")
    ref = Predictor.from_checkpoint(checkpoint, device="cpu")
    assert p.detector.backend == "onnx" and ref.detector.backend == "torch"
    a, b = ref.predict(image, progress=False), p.predict(image, progress=False)
    assert len(a) == len(b) == 2 and (b["status"] == "ok").all()
    cols = ["x1", "y1", "x2", "y2", "score", "left_eye_x", "mouth_right_y"]
    np.testing.assert_allclose(b[cols].to_numpy(float), a[cols].to_numpy(float), atol=1e-3)
    np.testing.assert_allclose(b.probabilities.to_numpy(), a.probabilities.to_numpy(), atol=1e-4)
    d = detector_for("blazeface", "cpu", 40, backend="onnx")
    assert d.backend == "onnx" and d.min_face_size == 40
    pytest.importorskip("facenet_pytorch")
    assert isinstance(detector_for("mtcnn", "cpu", 40, backend="onnx"), MTCNNDetector)
    assert isinstance(Predictor.from_checkpoint(checkpoint, device="cpu", backend="onnx", detector="mtcnn").detector,
                      MTCNNDetector)

def test_cli_writes_predictions_and_overlays(checkpoint, two_faces, tmp_path, capsys):
    from lanfer.cli import main

    image, _ = two_faces
    Image.fromarray(image).save(tmp_path / "two.png")
    video = _write_video(tmp_path / "clip.mp4", [image] * 6)
    out = tmp_path / "run"
    rc = main(["predict", str(checkpoint), str(tmp_path / "two.png"), str(video), str(tmp_path / "gone.jpg"),
               "--out", str(out), "--overlay", "--every-nth-frame", "2", "--batch-size", "4", "--no-progress",
               "--device", "cpu"])
    assert rc == 1  # gone.jpg failed (issue 13: the exit code says whether any input failed)
    printed = capsys.readouterr().out
    assert "two.png: 2 faces" in printed and "6 faces in 3 frames" in printed and "file not found" in printed
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 2 + 6 + 1
    assert table.columns[-1] == "status" and f"prob_{CLASSES[0]}" in table.columns
    assert table.groupby("source")["frame"].unique()[str(video)].tolist() == [0, 2, 4]
    assert (out / "overlays" / "two.jpg").is_file() and (out / "overlays" / "clip.mp4").is_file()
    rc = main(["predict", str(checkpoint), str(tmp_path / "two.png"), "--out", str(out), "--format", "json",
               "--no-progress", "--device", "cpu"])
    assert rc == 0 and len(pd.read_json(out / "predictions.json")) == 2
    assert main(["predict", str(tmp_path / "nope.safetensors"), str(tmp_path / "two.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_min_face_size_bounds_the_face_search(checkpoint, two_faces, tmp_path, capsys):
    from lanfer.cli import main

    image, _ = two_faces  # two ~130 px faces, on a 600 x 600 canvas so that a search from 500 px can run
    canvas = np.full((600, 600, 3), 140, np.uint8)
    canvas[200:400, 120:480] = image
    Image.fromarray(canvas).save(tmp_path / "two.png")
    args = ["predict", str(checkpoint), str(tmp_path / "two.png"), "--no-progress", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a"), "--min-face-size", "40"]) == 0
    assert (pd.read_csv(tmp_path / "a" / "predictions.csv")["status"] == "ok").sum() == 2
    # a search that starts far above both faces' size finds neither: one "no face" row, and no failure
    assert main([*args, "--out", str(tmp_path / "b"), "--min-face-size", "500"]) == 0
    assert pd.read_csv(tmp_path / "b" / "predictions.csv")["status"].tolist() == ["no face"]
    capsys.readouterr()
    for bad, says in (("8", "below MTCNN's smallest window"), ("big", "whole number of pixels")):
        with pytest.raises(SystemExit) as e:
            main([*args, "--min-face-size", bad])
        assert e.value.code == 2 and says in capsys.readouterr().err
    assert main([*args, "--min-face-size", "40", "--no-detect"]) == 2
    assert "--no-detect (detect=False) runs none" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# real photos: the face-api demo pictures (conftest.py fetches them when npm is available)


def test_real_photos_give_a_row_per_face_and_an_overlay(predictor, face_api_paths, face_api_counts, tmp_path):
    paths = face_api_paths
    # The smallest of these 22 faces is ~150 px wide in the 1920 px photos: searching from 80 px instead of
    # 20 px makes MTCNN's pyramid ~4x cheaper and finds exactly the faces a person counts.
    p = Predictor(predictor.runner, predictor.info, detector=get_detector("mtcnn", min_face_size=80))
    start = time.perf_counter()
    table = p.predict(paths, progress=False, overlay_dir=tmp_path / "ov")
    elapsed = time.perf_counter() - start
    counts = {p.name: int(((table["source"] == str(p)) & (table["status"] == "ok")).sum()) for p in paths}
    print(f"\npredict on the face-api photos: faces per image {counts}, {elapsed:.2f} s")
    for name, expected in face_api_counts.items():
        assert expected <= counts[name] <= expected + 1, (name, counts[name])
        assert (tmp_path / "ov" / name).is_file()
    ok = table[table["status"] == "ok"]
    assert ok["yaw"].notna().all() and (ok["yaw"].abs() < 90).all()
    assert np.allclose(ok.probabilities.to_numpy().sum(1), 1, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# the package's parts: one face record, PIL-only overlays, the ONNX entry route


def test_one_face_record_gives_the_row_and_the_picture():
    from lanfer.predict import FaceResult, table_columns, table_row

    lm = np.array([[30.0, 40.0], [60.0, 40.0], [45.0, 55.0], [33.0, 70.0], [57.0, 70.0]])
    face = FaceResult.from_detection(np.zeros((120, 100, 3), np.uint8), Face((10, 10, 80, 90), 0.9, lm), SIZE)
    assert face.crop.shape == (SIZE, SIZE, 3) and abs(face.pose[0]) < 5 and not face.classified
    probs = np.array([0.05, 0.05, 0.05, 0.7, 0.05, 0.05, 0.05])
    face.set_prediction(probs, CLASSES, attention=np.ones((2, 2)))
    assert face.label == "happy" and face.classified
    row = dict(zip(table_columns(CLASSES, attention=True), table_row("a.jpg", 0, 0, face, "ok", 7, attention=True)))
    assert (row["x1"], row["y2"], row["score"], row["nose_x"], row["label"]) == (10, 90, 0.9, 45, "happy")
    assert row["prob_happy"] == 0.7 and row["attention"].dtype == np.float32
    empty = dict(zip(table_columns(CLASSES), table_row("b.jpg", 3, None, None, "no face", 7)))
    assert empty["status"] == "no face" and empty["label"] is None and empty["face"] is None
    assert all(np.isnan(empty[c]) for c in ("x1", "score", "yaw", "nose_x", "prob_happy"))
    # annotate draws a record exactly as it draws the mapping with the same fields
    image = np.zeros((200, 300, 3), np.uint8)
    as_dict = dict(box=face.box, probs=probs, crop=face.crop, attention=face.attention)
    assert np.array_equal(annotate(image, [face], CLASSES), annotate(image, [as_dict], CLASSES))
    with pytest.raises(ValueError, match="unknown face fields"):
        annotate(image, [dict(box=face.box, probs=probs, colour="red")], CLASSES)


def test_heat_overlay_matches_matplotlibs_jet_and_overlays_need_no_matplotlib():
    import subprocess
    import sys

    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    from lanfer.predict import heat_overlay

    def overlay(image, heat, alpha=0.45):  # the reference: matplotlib's own jet colour map on the upsampled map
        h = torch.from_numpy(np.asarray(heat, dtype=np.float32))[None, None]
        h = F.interpolate(h, size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
        return (1 - alpha) * image + alpha * plt.get_cmap("jet")(np.clip(h, 0, 1))[..., :3]

    rng = np.random.default_rng(3)
    image = rng.random((40, 30, 3))
    heat = np.concatenate([rng.random((3, 4)), [[0.0, 1.0, 0.5, 1.0]]])  # both ends of the colour map
    assert np.abs(heat_overlay(image, heat) - overlay(image, heat)).max() < 1e-12
    code = ("import sys, lanfer.predict as p, numpy as np; p.annotate(np.zeros((50, 50, 3), np.uint8), [], ['a']); "
            "sys.exit(any(m.startswith('matplotlib') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_pil_images_and_arrays_give_the_same_table(predictor, two_faces):
    image, _ = two_faces
    from_array = predictor.predict(image, progress=False)
    from_pil = predictor.predict(Image.fromarray(image), progress=False)
    assert len(from_pil) == len(from_array) == 2
    assert np.array_equal(from_pil.probabilities.to_numpy(), from_array.probabilities.to_numpy())
    assert len(from_pil.plot(0).axes) == 1 + 2 * 2  # the PIL image is drawn again from the table
    grey = predictor.predict(np.zeros((20, 20, 3), np.float32), progress=False)
    assert grey["status"].iloc[0].startswith("error: the in-memory image must be uint8")


def test_onnx_files_without_lanfer_metadata_are_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from lanfer.predict import open_onnx

    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["logits"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 7])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 7])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    with pytest.raises(CheckpointError, match="without lanfer metadata"):
        open_onnx(model.SerializeToString(), torch.device("cpu"))
    for k, v in {"format": "lanfer", "classes": '["a", "b"]', "image_size": "32"}.items():
        model.metadata_props.add(key=k, value=v)
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    session, info = open_onnx(path, torch.device("cpu"))
    assert info.classes == ["a", "b"] and info.input_size == 32 and session.get_inputs()[0].name == "image"
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="ONNX Runtime cannot load it"):
        Predictor.from_onnx(tmp_path / "junk.onnx")
