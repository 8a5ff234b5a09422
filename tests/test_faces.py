"""Face detection, five-point alignment, head pose and pose subsets (lanfer.faces, lanfer.pose_subsets).

References: scipy's Euler angles for the rotation convention, OpenCV's estimateAffinePartial2D and a linear
least-squares solve for the similarity, blob centroids measured in the warped pixels for the alignment,
hand-computed sets for the pose lists, and real group photos (the @vladmandic/face-api npm package's demo
images, fetched with npm into a cache when npm and the registry are reachable) for MTCNN.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lanfer.faces import (ARCFACE_TEMPLATE, FACE_MODEL_3D, Face, FaceDetector, align_face, alignment_matrix,
                          available_detectors, estimate_pose, estimate_similarity, euler_angles, face_template,
                          get_detector, invert_affine, project_landmarks, register_detector, rotation_matrix,
                          transform_points, warp)

# ---------------------------------------------------------------------------------------------------------
# head pose


def test_rotation_matches_scipy_euler_convention():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    for _ in range(20):
        yaw, pitch, roll = rng.uniform(-170, 170), rng.uniform(-85, 85), rng.uniform(-170, 170)
        # Our R = Rz(roll) Rx(pitch) Ry(yaw) with yaw and pitch signs flipped relative to the right-hand rule
        # (positive yaw turns the nose to +x, positive pitch lifts it to -y): scipy intrinsic "ZXY".
        ref = Rotation.from_euler("ZXY", [roll, -pitch, -yaw], degrees=True).as_matrix()
        np.testing.assert_allclose(rotation_matrix(yaw, pitch, roll), ref, atol=1e-12)
        np.testing.assert_allclose(euler_angles(ref), (yaw, pitch, roll), atol=1e-9)
    # the pose fit's batched form: any leading shape, each matrix the one of its own angles
    from lanfer.faces.pose import _rotations

    angles = rng.uniform(-170, 170, (4, 2, 3))
    batched = _rotations(angles)
    assert batched.shape == (4, 2, 3, 3)
    for idx in np.ndindex(4, 2):
        np.testing.assert_allclose(batched[idx], rotation_matrix(*angles[idx]), atol=1e-12)


def test_pose_sign_conventions():
    mid_eyes = lambda p: (p[0] + p[1]) / 2  # noqa: E731
    # positive yaw: the nose moves toward image-right of the eyes' midpoint
    p = project_landmarks(30, 0, 0)
    assert p[2, 0] > mid_eyes(p)[0] + 10
    # positive pitch: the nose rises toward the eyes (y is down)
    up, level = project_landmarks(0, 25, 0), project_landmarks(0, 0, 0)
    assert (up[2, 1] - mid_eyes(up)[1]) < (level[2, 1] - mid_eyes(level)[1]) - 5
    # positive roll: clockwise on screen, the image-right eye is lower (larger y)
    r = project_landmarks(0, 0, 20)
    assert r[1, 1] > r[0, 1] + 10
    # left eye is image-left for a frontal face, as detectors report it
    assert level[0, 0] < level[1, 0] and level[3, 0] < level[4, 0]


@pytest.mark.parametrize("yaw", [-75, -45, -20, 0, 20, 45, 75])
def test_pose_exact_under_orthographic_projection(yaw):
    rng = np.random.default_rng(yaw + 100)
    for _ in range(5):
        truth = np.array([yaw, rng.uniform(-25, 25), rng.uniform(-30, 30)])
        lm = project_landmarks(*truth, scale=rng.uniform(0.5, 4), center=rng.uniform(0, 500, 2))
        np.testing.assert_allclose(estimate_pose(lm), truth, atol=0.5)


def _perspective_face(yaw, pitch, roll, rng, model=FACE_MODEL_3D, size=224, iod_frac=0.3):
    """Landmarks of a posed 3D model seen by a pinhole camera (not the estimator's weak perspective)."""
    f = size * rng.uniform(1.0, 3.0)
    z = f * 63.0 / (iod_frac * size)
    cam = (model - model.mean(0)) @ rotation_matrix(yaw, pitch, roll).T + [0.0, 0.0, z]
    return f * cam[:, :2] / cam[:, 2:3] + size / 2


@pytest.mark.parametrize("yaw", [-45, 0, 45])
def test_pose_yaw_within_15_degrees_for_a_different_face_under_perspective(yaw):
    """The acceptance bound: +-15 degrees at 0 and +-45 for faces that are not the generic model, seen under
    perspective, with landmark noise."""
    rng = np.random.default_rng(100 + yaw)
    errors = []
    for _ in range(30):
        pitch, roll = rng.uniform(-20, 20), rng.uniform(-20, 20)
        # another person's face: each axis stretched by up to 10%, each point moved by ~2 mm
        face = FACE_MODEL_3D * rng.uniform(0.9, 1.1, (1, 3)) + rng.normal(0, 2.0, (5, 3))
        lm = _perspective_face(yaw, pitch, roll, rng, model=face)
        lm += rng.normal(0, 0.02 * 0.3 * 224, lm.shape)  # 2% of the inter-ocular distance
        est = estimate_pose(lm)
        errors.append(abs(est.yaw - yaw))
        assert abs(est.roll - roll) < 15
    errors = np.array(errors)
    assert errors.max() < 15, errors
    assert np.median(errors) < 6, errors


def test_pose_is_invariant_to_image_similarity_and_mirrors_with_the_face():
    lm = _perspective_face(35, 10, 5, np.random.default_rng(3))
    base = estimate_pose(lm)
    # scale, translation and an in-plane rotation (roll) of the image
    th = np.radians(20)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    moved = estimate_pose(2.5 * lm @ rot.T + [300, -40])
    assert abs(moved.yaw - base.yaw) < 0.5 and abs(moved.pitch - base.pitch) < 0.5
    assert abs(((moved.roll - base.roll - 20) + 180) % 360 - 180) < 0.5
    # a mirrored photo: x -> -x, and image-left/right landmarks swap names
    mirrored = (lm * [-1, 1])[[1, 0, 2, 4, 3]]
    m = estimate_pose(mirrored)
    np.testing.assert_allclose(m, (-base.yaw, base.pitch, -base.roll), atol=0.5)


def test_frontal_template_is_frontal():
    pose = estimate_pose(ARCFACE_TEMPLATE)
    np.testing.assert_allclose(pose, (0, 0, 0), atol=1.5)


def test_pose_on_the_synthetic_renderer():
    """The renderer's faces are a different 3D shape (and its landmarks come with perspective); yaw and roll
    must agree with its metadata convention, and pitch must at least order the poses."""
    render = pytest.importorskip("lanfer.data.synth.render")
    names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

    def estimate(yaw, pitch, roll):
        _, marks = render.render_face(render.FaceParams(), yaw, pitch, roll, size=96)
        return estimate_pose(np.array([marks[k][:2] for k in names]))

    for yaw in (-45, 0, 45):
        est = estimate(yaw, 0, 10)
        assert abs(est.yaw - yaw) < 15, (yaw, est)
        assert abs(est.roll - 10) < 5, (yaw, est)
    up, level, down = (estimate(0, p, 0).pitch for p in (15, 0, -15))
    assert up > level + 8 and level > down + 8, (up, level, down)


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    """A small continuous-pose synthetic set (yaw uniform in [-90, 90]) with its metadata.csv."""
    synth = pytest.importorskip("lanfer.data.synth")
    root = tmp_path_factory.mktemp("synth")
    synth.generate(root, identities=2, seed=3, views="continuous", image_size=64, images_per_identity=10,
                   workers=1)
    import csv

    with open(root / "metadata.csv", newline="") as fh:
        return root, list(csv.DictReader(fh))


def test_pose_from_synth_metadata_landmarks(synth_set):
    _, rows = synth_set
    names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    errors = []
    for r in rows:
        lm = [[float(r[f"{n}_x"]), float(r[f"{n}_y"])] for n in names]
        errors.append(abs(estimate_pose(lm).yaw - float(r["yaw"])))
    assert len(rows) == 20 and max(errors) < 15, errors


def test_cli_pose_subsets_on_the_synthetic_set(synth_set, tmp_path):
    """Metadata yaws need no detector: the lists are exactly the rows above each threshold."""
    from lanfer.cli import main

    root, rows = synth_set
    cfg = tmp_path / "synth.yaml"
    cfg.write_text(f"data:\n  name: synth\n  root: {root}\n")
    assert main(["pose-subsets", str(cfg), "--out", str(tmp_path / "lists"), "--split", "all", "--name", "syn",
                 "--no-progress"]) == 0
    for t in (30, 45):
        expected = [f"{r['label']}/{Path(r['path']).name}" for r in rows if abs(float(r["yaw"])) > t]
        got = (tmp_path / "lists" / f"lanfer_pose_{t}_syn_list.txt").read_text().splitlines()
        assert sorted(got) == sorted(expected) and len(got) > 0


@pytest.mark.parametrize("bad,match", [
    (np.zeros((4, 2)), "shape"),
    (np.zeros((5, 3)), "shape"),
    (np.full((5, 2), np.nan), "NaN"),
    (np.ones((5, 2)), "coincide"),
    ("eyes", "numbers"),
])
def test_pose_rejects_bad_landmarks(bad, match):
    with pytest.raises(ValueError, match=match):
        estimate_pose(bad)


# ---------------------------------------------------------------------------------------------------------
# alignment


def _similarity(angle_deg, scale, tx, ty):
    th = np.radians(angle_deg)
    return np.array([[scale * np.cos(th), -scale * np.sin(th), tx], [scale * np.sin(th), scale * np.cos(th), ty]])


def test_similarity_matches_opencv_and_linear_least_squares():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    truth = _similarity(33, 1.7, 12.0, -30.0)
    dst = transform_points(src, truth)
    m = estimate_similarity(src, dst)
    np.testing.assert_allclose(m, truth, atol=1e-9)
    ref, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS)
    np.testing.assert_allclose(m, ref, atol=1e-3)
    # noisy points: the least-squares similarity solves dst = [a -b; b a] src + t linearly
    noisy = dst + rng.normal(0, 3.0, dst.shape)
    a_rows = []
    for (x, y) in src:
        a_rows += [[x, -y, 1, 0], [y, x, 0, 1]]
    a, b, tx, ty = np.linalg.lstsq(np.array(a_rows), noisy.reshape(-1), rcond=None)[0]
    np.testing.assert_allclose(estimate_similarity(src, noisy), [[a, -b, tx], [b, a, ty]], atol=1e-9)


def test_similarity_never_reflects():
    src = ARCFACE_TEMPLATE
    mirrored = src * [-1, 1] + [112, 0]  # a mirror image keeping the left/right names: not a similarity
    m = estimate_similarity(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_face_template_scaling_and_margin():
    np.testing.assert_allclose(face_template(112, margin=0.0), ARCFACE_TEMPLATE)
    np.testing.assert_allclose(face_template(224, margin=0.0), 2 * ARCFACE_TEMPLATE)
    t = face_template(224, margin=0.1)
    # the tight template shrinks about the crop centre by 1 / (1 + 2 * margin)
    np.testing.assert_allclose(t - 112, (2 * ARCFACE_TEMPLATE - 112) / 1.2)
    # a user template is given as fractions of the crop side
    custom = [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]]
    np.testing.assert_allclose(face_template(200, margin=0.0, template=custom), 200 * np.array(custom))


def _dot_image(points, shape=(400, 500)):
    """A grey picture with a 5x5 coloured square at each landmark (pixel-centre coordinates)."""
    img = np.full(shape + (3,), 90, np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for (x, y), c in zip(points, colours):
        img[(np.abs(xx - x) <= 2.5) & (np.abs(yy - y) <= 2.5)] = c
    return img, colours


def _centroids(img, colours):
    out = []
    for c in colours:
        diff = np.abs(img.astype(int) - np.array(c)).sum(-1)
        w = np.clip(1.0 - diff / 150.0, 0, None)  # weight pixels by closeness to the colour
        yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
        out.append([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
    return np.array(out)


@pytest.mark.parametrize("angle,scale", [(0, 1.0), (-35, 0.6), (25, 1.8), (90, 1.2)])
def test_align_face_puts_landmarks_on_the_template(angle, scale):
    """Landmarks drawn on a rotated and scaled face land within 1 pixel of the template after alignment."""
    size, margin = 160, 0.1
    # a face in the picture: the template, moved by a known similarity (centred in a 400x500 image)
    placed = transform_points(ARCFACE_TEMPLATE - 56, _similarity(angle, 2.2 * scale, 250, 200))
    img, colours = _dot_image(placed)
    crop = align_face(img, placed, size=size, margin=margin)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    got = _centroids(crop, colours)
    np.testing.assert_allclose(got, face_template(size, margin), atol=1.0)


def test_align_face_accepts_pil_and_matches_alignment_matrix():
    pts = transform_points(ARCFACE_TEMPLATE, _similarity(10, 1.5, 30, 20))
    img, _ = _dot_image(pts)
    a = align_face(Image.fromarray(img), pts, size=96)
    b = warp(img, alignment_matrix(pts, size=96), 96)
    np.testing.assert_array_equal(a, b)
    m = alignment_matrix(pts, size=96)
    np.testing.assert_allclose(transform_points(transform_points(pts, m), invert_affine(m)), pts, atol=1e-9)


def test_pil_fallback_matches_opencv(monkeypatch):
    pytest.importorskip("cv2")
    yy, xx = np.mgrid[0:150, 0:200]
    img = np.stack([xx * 1.2, yy * 1.6, (xx + yy) * 0.7], -1).clip(0, 255).astype(np.uint8)  # smooth ramps
    m = _similarity(17, 0.8, 20.5, -8.25)
    with_cv2 = {b: warp(img, m, (120, 100), b) for b in ("constant", "replicate", "reflect")}
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError
    # output pixels whose source lies at least 1 px inside the image (the two libraries differ in how they
    # blend the last half pixel with a constant border)
    yo, xo = np.mgrid[0:100, 0:120]
    src = transform_points(np.stack([xo.ravel(), yo.ravel()], 1), invert_affine(m)).reshape(100, 120, 2)
    inside = (src[..., 0] >= 1) & (src[..., 0] <= 198) & (src[..., 1] >= 1) & (src[..., 1] <= 148)
    assert inside.mean() > 0.5
    for border, ref in with_cv2.items():
        pil = warp(img, m, (120, 100), border)
        diff = np.abs(pil.astype(int) - ref.astype(int))
        if border == "constant":
            diff = diff[inside]
        assert diff.max() <= 2, (border, diff.max())


@pytest.mark.parametrize("image,match", [
    (np.zeros((50, 50), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((50, 50, 4), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((50, 50, 3), np.float32), "uint8"),
    (np.zeros((0, 50, 3), np.uint8), "empty"),
    ([[1, 2, 3]], "numpy array"),
])
def test_align_rejects_bad_images(image, match):
    with pytest.raises(ValueError, match=match):
        align_face(image, ARCFACE_TEMPLATE)


def test_align_rejects_bad_landmarks_and_arguments():
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        align_face(img, np.zeros((68, 2)))
    with pytest.raises(ValueError, match="all at one place"):
        align_face(img, np.ones((5, 2)))
    with pytest.raises(ValueError, match="border"):
        align_face(img, ARCFACE_TEMPLATE, border="wrap")
    with pytest.raises(ValueError, match="margin"):
        align_face(img, ARCFACE_TEMPLATE, margin=5)


# ---------------------------------------------------------------------------------------------------------
# the detector interface


def test_face_record_and_validation():
    f = Face((10, 20, 110, 140), 0.99, ARCFACE_TEMPLATE)
    assert f.width == 100 and f.height == 120 and f.area == 12000
    d = f.to_dict()
    assert d["x1"] == 10 and d["score"] == pytest.approx(0.99) and d["nose_x"] == pytest.approx(56.0252)
    with pytest.raises(ValueError, match="shape"):
        Face((0, 0, 1, 1), 1.0, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="x2 >= x1"):
        Face((10, 0, 5, 1), 1.0, ARCFACE_TEMPLATE)


def test_detector_registry_plugs_in_a_custom_detector():
    @register_detector("test-fixed")
    class Fixed:
        def __init__(self, landmarks):
            self.landmarks = landmarks

        def detect(self, images):
            return [[Face((0, 0, 10, 10), 1.0, self.landmarks)] for _ in images]

    det = get_detector("test-fixed", landmarks=ARCFACE_TEMPLATE)
    assert isinstance(det, FaceDetector) and "test-fixed" in available_detectors() and "mtcnn" in available_detectors()
    with pytest.raises(ValueError, match="unknown face detector 'nope'.*mtcnn"):
        get_detector("nope")


def test_missing_facenet_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'lanfer[faces]'")):
        get_detector("mtcnn")


@pytest.fixture(scope="module")
def mtcnn():
    pytest.importorskip("facenet_pytorch")
    return get_detector("mtcnn", device="cpu")


def test_mtcnn_inputs(mtcnn):
    blank = np.full((120, 160, 3), 128, np.uint8)
    tiny = np.zeros((12, 300, 3), np.uint8)  # shorter than min_face_size: no face can fit
    assert mtcnn.detect([blank, tiny, Image.fromarray(blank)]) == [[], [], []]
    assert mtcnn.detect([]) == []
    with pytest.raises(ValueError, match="list of images"):
        mtcnn.detect(blank)
    with pytest.raises(ValueError, match=r"images\[1\].*\(H, W, 3\)"):
        mtcnn.detect([blank, blank[..., 0]])
    with pytest.raises(ValueError, match="empty"):
        mtcnn.detect([np.zeros((0, 0, 3), np.uint8)])
    with pytest.raises(ValueError, match="thresholds"):
        get_detector("mtcnn", thresholds=(0.6, 0.7))


# ---------------------------------------------------------------------------------------------------------
# MTCNN on real photos (the face-api demo pictures: six group photos, 22 faces)

# The photos and the counts a person made come from conftest.py (face_api_photos, face_api_counts).


@pytest.fixture(scope="module")
def face_api_faces(mtcnn, face_api_photos) -> dict[str, list[Face]]:
    """MTCNN's faces in each demo photo, detected once for the tests below."""
    start = time.perf_counter()
    results = mtcnn.detect(list(face_api_photos.values()))
    elapsed = time.perf_counter() - start
    counts = {n: len(f) for n, f in zip(face_api_photos, results)}
    print(f"\nMTCNN per-image faces {counts}, total {sum(counts.values())}, {elapsed:.2f} s for 6 photos")
    return dict(zip(face_api_photos, results))


def test_mtcnn_finds_the_faces_in_group_photos(face_api_faces, face_api_counts):
    for (name, faces), expected in zip(face_api_faces.items(), face_api_counts.values()):
        assert expected <= len(faces) <= expected + 1, (name, len(faces))
        for f in faces:
            x1, y1, x2, y2 = f.box
            pad = 0.2 * f.width
            assert ((f.landmarks >= [x1 - pad, y1 - pad]) & (f.landmarks <= [x2 + pad, y2 + pad])).all()
            assert 0.7 <= f.score <= 1.0
        areas = [f.area for f in faces]
        assert areas == sorted(areas, reverse=True)
        # confident (upright, not profile) faces: image-left eye left of the image-right eye, eyes above mouth
        for f in (f for f in faces if f.score > 0.95):
            assert f.landmarks[0, 0] < f.landmarks[1, 0]
            assert f.landmarks[:2, 1].mean() < f.landmarks[3:, 1].mean()


def test_mtcnn_batching_and_mirroring_are_consistent(face_api_photos):
    pytest.importorskip("facenet_pytorch")
    # two photos at one size run as one batch; the unbatched detector must give the same faces
    small = [np.asarray(Image.fromarray(face_api_photos[n]).resize((720, 480))) for n in ("sample1.jpg", "sample5.jpg")]
    batched = get_detector("mtcnn", batch=True).detect(small)
    single = get_detector("mtcnn", batch=False).detect(small)
    for a, b in zip(batched, single):
        assert len(a) == len(b)
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fa.box, fb.box, atol=1e-2)
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=1e-2)
    # a mirrored photo: the same faces, mirrored, and yaw changes sign
    flipped = get_detector("mtcnn").detect([np.ascontiguousarray(small[1][:, ::-1])])[0]
    assert len(flipped) == len(batched[1])
    w = small[1].shape[1]
    for f in batched[1]:
        mirror_x = w - 1 - (f.box[0] + f.box[2]) / 2
        match = min(flipped, key=lambda g: abs((g.box[0] + g.box[2]) / 2 - mirror_x))
        assert abs((match.box[0] + match.box[2]) / 2 - mirror_x) < 0.1 * f.width
        if f.score > 0.95:
            assert abs(estimate_pose(match.landmarks).yaw + estimate_pose(f.landmarks).yaw) < 10


def test_aligned_crops_of_detected_faces_are_aligned_again(mtcnn, face_api_photos, face_api_faces):
    """Detect -> align -> detect on the crop: the landmarks land on the template (within 8% of the crop)."""
    image = face_api_photos["sample3.jpg"]
    crops = [align_face(image, f.landmarks, size=224) for f in face_api_faces["sample3.jpg"]]
    again = mtcnn.detect(crops)
    for faces in again:
        assert faces, "no face found in an aligned crop"
        err = np.linalg.norm(faces[0].landmarks - face_template(224), axis=1)
        assert err.max() < 0.08 * 224, err


def test_pose_subsets_detects_tight_face_crops(face_api_photos, face_api_faces, tmp_path):
    """Dataset-style tight crops (the face fills the picture, 100x100 like RAF-DB's aligned images) are
    still found: pose_subsets pads and upscales them before detection."""
    from lanfer.data import build_dataset
    from lanfer.pose_subsets import write_pose_subsets

    n = 0
    for name, image in face_api_photos.items():
        for f in face_api_faces[name]:
            if f.score < 0.95:
                continue
            d = tmp_path / "crops" / "test" / "face"
            d.mkdir(parents=True, exist_ok=True)
            crop = align_face(image, f.landmarks, size=100, margin=0.0)  # ArcFace's tight crop
            Image.fromarray(crop).save(d / f"{name[:-4]}_{n}.png")
            n += 1
    ds = build_dataset("imagefolder", tmp_path / "crops", "test")
    res = write_pose_subsets(ds, tmp_path / "lists", (30,), detector="mtcnn", use_meta_yaw=False, progress=False)
    assert res.total == n >= 20
    assert res.detected >= 0.9 * n, res


# ---------------------------------------------------------------------------------------------------------
# pose subsets


def _csv_dataset(tmp_path, yaws, with_meta=True, classes=("happy", "sad")):
    """A csv dataset of small images; image i's pixel value encodes i, its yaw column holds yaws[i]."""
    root = tmp_path / "ds"
    root.mkdir()
    rows = ["path,label" + (",yaw" if with_meta else "")]
    for i, y in enumerate(yaws):
        Image.fromarray(np.full((60, 60, 3), i, np.uint8)).save(root / f"img_{i:02d}.png")
        label = classes[i % len(classes)]
        rows.append(f"img_{i:02d}.png,{label}" + (f",{'' if y is None else y}" if with_meta else ""))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


YAWS = [0, 10, -31, 30, 44.9, -46, 60, -90, 29.9, 45.1]


def _expected(threshold):
    return [f"{i % 2}/img_{i:02d}.png" for i, y in enumerate(YAWS) if abs(y) > threshold]


def test_pose_subsets_from_metadata(tmp_path):
    from lanfer.data import build_dataset
    from lanfer.pose_subsets import write_pose_subsets

    ds = build_dataset("csv", _csv_dataset(tmp_path, YAWS), "test", classes=["happy", "sad"])

    class Unused:
        def detect(self, images):
            raise AssertionError("no image needs detection when every image has a metadata yaw")

    res = write_pose_subsets(ds, tmp_path / "out", thresholds=(30, 45), detector=Unused(), name="toy", progress=False)
    assert res.counts == {30.0: len(_expected(30)), 45.0: len(_expected(45))}
    assert res.from_meta == len(YAWS) and res.detected == 0 and res.no_face == 0
    for t in (30, 45):
        lines = (tmp_path / "out" / f"lanfer_pose_{t}_toy_list.txt").read_text().splitlines()
        assert lines == _expected(t)
    # the lists read back as a subset through the dataset layer
    sub = build_dataset("csv", tmp_path / "ds", "test", classes=["happy", "sad"],
                        subset=str(tmp_path / "out" / "lanfer_pose_45_toy_list.txt"))
    assert [Path(s.path).name for s in sub.samples] == [e.split("/")[1] for e in _expected(45)]


class _KnownPoseDetector:
    """A stand-in detector: image i (its centre pixel value) is a face at yaw YAWS[i]; i == 255: no face."""

    name = "known"

    def __init__(self, yaws):
        self.yaws = yaws
        self.calls = 0

    def detect(self, images):
        self.calls += 1
        out = []
        for im in images:
            i = int(im[im.shape[0] // 2, im.shape[1] // 2, 0])
            if i >= len(self.yaws) or self.yaws[i] is None:
                out.append([])
                continue
            lm = project_landmarks(self.yaws[i], 5.0, -3.0, scale=1.0, center=(im.shape[1] / 2, im.shape[0] / 2))
            out.append([Face((0, 0, 10, 10), 0.9, lm), Face((0, 0, 5, 5), 0.8, project_landmarks(0, 0, 0))])
        return out


def test_pose_subsets_from_landmarks_and_meta_fallback(tmp_path):
    from lanfer.data import build_dataset
    from lanfer.pose_subsets import write_pose_subsets

    meta = list(YAWS)
    meta[2] = meta[6] = None  # two rows without a metadata yaw: only those are detected
    det_yaws = [None] * len(YAWS)
    det_yaws[2], det_yaws[6] = YAWS[2], YAWS[6]
    ds = build_dataset("csv", _csv_dataset(tmp_path, meta), "test")
    det = _KnownPoseDetector(det_yaws)
    res = write_pose_subsets(ds, tmp_path / "out", (30, 45), detector=det, name="mix", progress=False)
    assert res.from_meta == len(YAWS) - 2 and res.detected == 2
    assert (tmp_path / "out" / "lanfer_pose_30_mix_list.txt").read_text().splitlines() == _expected(30)

    # ignoring the metadata: every image is detected; image 7 has no face and is left out of every list
    det_yaws = list(YAWS)
    det_yaws[7] = None
    res = write_pose_subsets(ds, tmp_path / "out2", (45,), detector=_KnownPoseDetector(det_yaws),
                             use_meta_yaw=False, name="det", progress=False)
    assert res.detected == len(YAWS) - 1 and res.no_face == 1
    assert (tmp_path / "out2" / "lanfer_pose_45_det_list.txt").read_text().splitlines() == \
        [e for e in _expected(45) if not e.endswith("img_07.png")]
    table = (tmp_path / "out2" / "pose_yaw_det.csv").read_text().splitlines()
    assert table[0] == "path,entry,label,yaw,pitch,roll,source,face_score"
    row5 = table[1 + 5].split(",")
    assert float(row5[3]) == pytest.approx(YAWS[5], abs=0.5) and row5[6] == "known"
    assert table[1 + 7].split(",")[6] == "none"


def test_pose_subsets_rejects_bad_thresholds(tmp_path):
    from lanfer.data import build_dataset
    from lanfer.pose_subsets import write_pose_subsets

    ds = build_dataset("csv", _csv_dataset(tmp_path, YAWS), "test")
    with pytest.raises(ValueError, match="thresholds"):
        write_pose_subsets(ds, tmp_path / "o", thresholds=(-5,), progress=False)


def test_cli_pose_subsets(tmp_path, capsys):
    from lanfer.cli import main

    root = _csv_dataset(tmp_path, YAWS)
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"data:\n  name: csv\n  root: {root}\n")
    rc = main(["pose-subsets", str(cfg), "--thresholds", "30,45", "--out", str(tmp_path / "lists"),
               "--set", "data.classes=[happy,sad]", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "|yaw| > 30" in out and "|yaw| > 45" in out
    assert (tmp_path / "lists" / "lanfer_pose_30_csv_list.txt").read_text().splitlines() == _expected(30)
    with pytest.raises(SystemExit):  # argparse rejects a threshold that is not a number
        main(["pose-subsets", str(cfg), "--thresholds", "30,x", "--out", str(tmp_path / "l2")])
    assert main(["pose-subsets", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "l3")]) == 2
