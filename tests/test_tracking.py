"""Video tracking and smoothing: the IoU tracker and the probability smoother on synthetic box sequences
(moving, crossing, appearing, disappearing), an EMA computed by hand, and the video path of ``Predictor.predict``
end to end on tiny synthetic videos: ``track_id`` in the table, CSV and JSON, detection reuse
(``detect_every``) against a counting detector, classification reuse (``classify_every``) against a counting
classifier, its equivalence at k=1 with the photo path, smoothing against the EMA of the unsmoothed table, and
bad video files.

References: box IoUs computed by hand; the EMA written out per frame; the photo path (each decoded frame
predicted as an in-memory image, no tracking) for the video path at ``detect_every=1, smooth=0``; the table
at ``classify_every=1`` for the frames that ``classify_every=k`` classifies.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

import lanfer
from lanfer.checkpoint import save_model
from lanfer.faces import Face
from lanfer.predict import Predictor
from lanfer.predict.tracking import IoUTracker, ProbabilitySmoother, greedy_match, iou_matrix

CLASSES = ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
SIZE = 64


# ---------------------------------------------------------------------------------------------------------
# the tracker and the smoother on synthetic sequences

def test_iou_matrix_by_hand():
    a = [(0, 0, 10, 10), (100, 100, 100, 120)]  # the second is empty (zero width)
    b = [(5, 0, 15, 10), (0, 0, 10, 10), (20, 20, 30, 30)]
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(50 / 150)  # overlap 5 x 10, union 100 + 100 - 50
    assert iou[0, 1] == 1.0 and iou[0, 2] == 0.0
    assert (iou[1] == 0).all()
    assert iou_matrix([], b).shape == (0, 3) and iou_matrix(a, []).shape == (2, 0)


def test_greedy_match_takes_the_highest_overlap_first():
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])
    # greedy: (0, 0) at 0.9 first, then row 1 can only take column 1, whose 0.1 is under the threshold
    assert greedy_match(iou, 0.3) == [(0, 0)]
    assert sorted(greedy_match(iou, 0.05)) == [(0, 0), (1, 1)]
    assert greedy_match(np.zeros((0, 2)), 0.3) == []


def _box(x, y, side=100):
    return (x, y, x + side, y + side)


def test_moving_and_crossing_faces_keep_their_ids():
    tracker = IoUTracker(iou_threshold=0.3, max_missed=2)
    seen = []
    for t in range(30):
        a = _box(10 * t, 0)  # moves right
        b = _box(300 - 10 * t, 30)  # moves left, crossing a around t = 15 (their IoU peaks at 0.54 there)
        order = [a, b] if t % 2 == 0 else [b, a]  # the detector's order changes from frame to frame
        ids = tracker.update(order)
        seen.append(ids if t % 2 == 0 else ids[::-1])
    assert all(ids == [0, 1] for ids in seen), seen
    assert tracker.next_id == 2


def test_faces_appear_disappear_and_come_back():
    tracker = IoUTracker(iou_threshold=0.3, max_missed=2)
    a, b = _box(0, 0), _box(300, 0)
    assert tracker.update([a]) == [0]
    assert tracker.update([a, b]) == [0, 1]  # b appears: a new id
    assert tracker.update([b]) == [1]  # a missed once
    assert tracker.update([]) == []  # a missed twice, b once
    assert tracker.held() == [] and tracker.alive_ids == {0, 1}
    assert tracker.update([a, b]) == [0, 1]  # both back within max_missed: same ids
    for _ in range(3):
        tracker.update([b])  # a misses 3 > max_missed frames in a row: its track ends
    assert tracker.alive_ids == {1}
    assert tracker.update([a, b]) == [2, 1]  # a comes back as a new track; ids are never reused
    assert [t.track_id for t in tracker.held()] == [1, 2]


def test_a_jump_beyond_the_threshold_starts_a_new_track():
    tracker = IoUTracker(iou_threshold=0.5, max_missed=0)
    assert tracker.update([_box(0, 0)]) == [0]
    assert tracker.update([_box(30, 0)]) == [0]  # IoU 70/130 = 0.54
    assert tracker.update([_box(80, 0)]) == [1]  # IoU 50/150 = 0.33 < 0.5: another face; track 0 ends
    assert tracker.alive_ids == {1}


def test_the_tracker_keeps_landmarks_and_refuses_bad_settings():
    tracker = IoUTracker()
    lm = np.arange(10.0).reshape(5, 2)
    tracker.update([_box(0, 0)], [lm], [0.9])
    (t,) = tracker.held()
    assert t.landmarks is lm and t.score == 0.9 and t.box == (0.0, 0.0, 100.0, 100.0)
    with pytest.raises(ValueError, match="landmarks"):
        tracker.update([_box(0, 0)], [lm, lm])
    with pytest.raises(ValueError, match="iou_threshold"):
        IoUTracker(iou_threshold=0)
    with pytest.raises(ValueError, match="max_missed"):
        IoUTracker(max_missed=-1)
    with pytest.raises(ValueError, match="smooth"):
        ProbabilitySmoother(1.0)


def test_smoothing_is_the_ema_computed_by_hand():
    sm = ProbabilitySmoother(0.6, max_age=2)
    p = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0])]
    s0 = sm.update(7, p[0], 0)
    s1 = sm.update(7, p[1], 1)
    s2 = sm.update(7, p[2], 2)
    np.testing.assert_allclose(s0, [1.0, 0.0])
    np.testing.assert_allclose(s1, [0.6, 0.4])  # 0.6 * [1, 0] + 0.4 * [0, 1]
    np.testing.assert_allclose(s2, [0.36, 0.64])  # 0.6 * [0.6, 0.4] + 0.4 * [0, 1]
    assert [int(np.argmax(s)) for s in (s0, s1, s2)] == [0, 0, 1]  # the label flips on the second new frame
    # another track is smoothed on its own
    np.testing.assert_allclose(sm.update(8, np.array([0.2, 0.8]), 2), [0.2, 0.8])
    sm.prune(4)  # 7 and 8 were last updated at step 2: 2 steps ago, kept
    assert set(sm.state) == {7, 8}
    sm.prune(5)  # 3 steps > max_age
    assert sm.state == {}
    np.testing.assert_allclose(sm.update(7, np.array([0.0, 1.0]), 5), [0.0, 1.0])  # afresh
    off = ProbabilitySmoother(0.0)
    off.update(1, p[0], 0)
    np.testing.assert_allclose(off.update(1, p[1], 1), p[1])


# ---------------------------------------------------------------------------------------------------------
# the video path of Predictor.predict

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    m = lanfer.create_model("lan_resnet18", num_classes=7, head_widths=(16, 8, 4)).eval()
    for mod in m.modules():  # random BatchNorm statistics: logits far from uniform, depending on the input
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    info = {"model": {"name": "lan_resnet18", "num_classes": 7, "head_widths": [16, 8, 4]}, "classes": CLASSES,
            "image_size": SIZE, "normalize": "imagenet"}
    return save_model(tmp_path_factory.mktemp("ckpt") / "best.safetensors", m, info)


@pytest.fixture(scope="module")
def two_faces():
    """Two synthetic faces side by side (the renderer of lanfer.data.synth), which MTCNN finds."""
    synth = pytest.importorskip("lanfer.data.synth")
    canvas = np.full((200, 360, 3), 140, np.uint8)
    for i, (yaw, x0) in enumerate([(0.0, 10), (25.0, 190)]):
        img, _ = synth.render_face(synth.FaceParams(identity=synth.sample_identity(0, i)), yaw=yaw, size=160)
        canvas[20:180, x0:x0 + 160] = np.asarray(img)
    return canvas


from test_predict import _write_video  # noqa: E402  (the same mp4 writer as the predict tests)


def _decoded(path):
    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


class _ScriptedDetector:
    """Faces whose boxes move by a fixed step per detector image (its n-th image is the n-th detected frame,
    since frames are detected in order); face 1 exists only in images ``face1_from`` to ``face1_until - 1``."""

    def __init__(self, step=(4.0, 0.0), face1_until=10**9, face1_from=0):
        self.seen = 0
        self.calls: list[int] = []
        self.step, self.face1_until, self.face1_from = np.array(step), face1_until, face1_from

    def detect(self, images):
        self.calls.append(len(images))
        out = []
        for _ in images:
            d = self.step * self.seen
            faces = []
            for k, x0 in enumerate((10.0, 120.0)):
                if k == 1 and not self.face1_from <= self.seen < self.face1_until:
                    continue
                lm = np.array([[25, 40], [55, 40], [40, 55], [28, 70], [52, 70]], float) + [x0 - 10, 0] + d
                faces.append(Face((x0 + d[0], 10 + d[1], x0 + 70 + d[0], 90 + d[1]), 0.99, lm))
            out.append(faces)
            self.seen += 1
        return out


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (120, 224, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def test_video_rows_carry_track_ids_and_photos_none(checkpoint, tmp_path):
    video = _write_video(tmp_path / "clip.mp4", _frames(8))
    p = Predictor.from_checkpoint(checkpoint, device="cpu", detector=_ScriptedDetector(face1_until=5))
    table = p.predict([video, _frames(1)[0]], progress=False, window=3, batch_size=4)
    assert list(table.columns[:4]) == ["source", "frame", "face", "track_id"]
    vid = table[table["source"] == str(video)]
    assert len(vid) == 8 * 2 - 3  # face 1 gone from frame 5 on
    assert vid.groupby("track_id")["frame"].apply(list).to_dict() == {0: list(range(8)), 1: list(range(5))}
    photo = table[table["source"] == "array:0"]
    assert len(photo) == 1 and photo["track_id"].isna().all()  # the scripted face 1 is gone by then
    assert table["track_id"].dtype == "Int64"


def test_detect_every_reuses_the_tracked_faces(checkpoint, tmp_path):
    frames = _frames(10)
    video = _write_video(tmp_path / "clip.mp4", frames)
    det = _ScriptedDetector(step=(12.0, 0.0))
    p = Predictor.from_checkpoint(checkpoint, device="cpu", detector=det)
    table = p.predict(video, progress=False, window=4, batch_size=3, detect_every=3, smooth=0.0)
    assert sum(det.calls) == 4 and table.attrs["detected_frames"] == 4  # frames 0, 3, 6, 9
    assert table.attrs["frames"] == 10 and len(table) == 20
    detected = table[table["score"].notna()]
    assert sorted(detected["frame"].unique()) == [0, 3, 6, 9]
    assert table["track_id"].tolist() == [0, 1] * 10  # the step (12 px on a 70 px box) keeps the tracks
    for f in range(10):
        key = f - f % 3
        rows, key_rows = table[table["frame"] == f], table[table["frame"] == key]
        # a carried face is cut at its track's last detected box and landmarks (and keeps their pose) ...
        np.testing.assert_allclose(rows[["x1", "y1", "x2", "y2", "nose_x", "yaw", "roll"]].to_numpy(),
                                   key_rows[["x1", "y1", "x2", "y2", "nose_x", "yaw", "roll"]].to_numpy())
        if f != key:  # ... from its own frame, so the model sees other pixels than on the detected frame
            assert rows["score"].isna().all()
            assert np.abs(rows.filter(like="prob_").to_numpy() - key_rows.filter(like="prob_").to_numpy()).max() > 1e-4
    # the same video detected on every frame: the detected frames give the same rows
    full = Predictor.from_checkpoint(checkpoint, device="cpu", detector=_ScriptedDetector(step=(4.0, 0.0))).predict(
        video, progress=False, smooth=0.0)
    cols = ["x1", "nose_x", *[f"prob_{c}" for c in CLASSES]]
    np.testing.assert_allclose(full[full["frame"] == 0][cols].to_numpy(), table[table["frame"] == 0][cols].to_numpy(),
                               atol=1e-6)


def test_detect_every_1_is_the_photo_path_frame_by_frame(checkpoint, two_faces, tmp_path):
    frames = [np.roll(two_faces, 2 * i, axis=1) for i in range(6)]
    video = _write_video(tmp_path / "faces.mp4", frames)
    p = Predictor.from_checkpoint(checkpoint, device="cpu")  # the real default detector (BlazeFace)
    table = p.predict(video, progress=False, detect_every=1, smooth=0.0, window=4, batch_size=5)
    # each decoded frame as a photo (no tracking, no reuse), in the same windows and batches
    ref = p.predict(_decoded(video), progress=False, window=4, batch_size=5)
    assert len(table) == len(ref) == 12 and (table["status"] == "ok").all()
    assert ref["track_id"].isna().all()
    cols = [c for c in table.columns if c not in ("source", "frame", "track_id")]
    pd.testing.assert_frame_equal(pd.DataFrame(table[cols]).reset_index(drop=True),
                                  pd.DataFrame(ref[cols]).reset_index(drop=True), check_exact=False, atol=1e-4)
    # two faces, two tracks, each the same face over the frames (x grows 2 px a frame)
    assert table.groupby("track_id").size().to_dict() == {0: 6, 1: 6}
    for _, g in table.groupby("track_id"):
        assert (np.diff(g["nose_x"].to_numpy()) > 0).all()


def test_smoothing_is_the_ema_of_the_unsmoothed_table(checkpoint, tmp_path):
    video = _write_video(tmp_path / "clip.mp4", _frames(9, seed=3))
    raw = Predictor.from_checkpoint(checkpoint, device="cpu", detector=_ScriptedDetector(face1_until=4)).predict(
        video, progress=False, smooth=0.0, batch_size=4, window=2)
    sm = Predictor.from_checkpoint(checkpoint, device="cpu", detector=_ScriptedDetector(face1_until=4)).predict(
        video, progress=False, smooth=0.7, batch_size=4, window=2)
    assert sm.attrs["smooth"] == 0.7
    prob = [f"prob_{c}" for c in CLASSES]
    for tid, g in raw.groupby("track_id"):
        p = g[prob].to_numpy(dtype=float)  # (T, K), frames in order
        s = [p[0]]
        for row in p[1:]:
            s.append(0.7 * s[-1] + 0.3 * row)
        got = sm[sm["track_id"] == tid]
        np.testing.assert_allclose(got[prob].to_numpy(dtype=float), np.array(s), atol=1e-6)
        assert got["label"].tolist() == [CLASSES[k] for k in np.argmax(s, axis=1)]
    np.testing.assert_allclose(sm[prob].sum(axis=1), 1, atol=1e-5)
    assert (np.abs(np.diff(sm[sm["track_id"] == 0][prob].to_numpy(float), axis=0)).max()
            < np.abs(np.diff(raw[raw["track_id"] == 0][prob].to_numpy(float), axis=0)).max())


def test_bad_settings_and_bad_videos(checkpoint, tmp_path):
    p = Predictor.from_checkpoint(checkpoint, device="cpu", detector=_ScriptedDetector())
    for kw, match in [({"detect_every": 0}, "detect_every"), ({"smooth": 1.0}, "smooth"),
                      ({"iou_threshold": 0.0}, "iou_threshold"), ({"max_missed": -1}, "max_missed")]:
        with pytest.raises(ValueError, match=match):
            p.predict(_frames(1), progress=False, **kw)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    good = _write_video(tmp_path / "good.mp4", _frames(4))
    table = p.predict([bad, good], progress=False, detect_every=2)
    assert table["status"].iloc[0].startswith("error: cannot open video") and pd.isna(table["track_id"].iloc[0])
    assert (table[table["source"] == str(good)]["status"] == "ok").sum() == 8  # the run went on


def _count_crops(p):
    """Make ``p.classify`` record how many crops each call gets; returns that list."""
    calls, classify = [], p.classify

    def counted(crops):
        calls.append(len(crops))
        return classify(crops)

    p.classify = counted
    return calls


def _probs_by_track(table):
    """{(frame, track_id): prob_* row} of a video table."""
    prob = [f"prob_{c}" for c in CLASSES]
    return {(int(f), int(t)): np.asarray(r, float) for f, t, r in
            zip(table["frame"], table["track_id"], table[prob].to_numpy(float))}


# face 1 appears on frame 4 (detector image 4) while track 0 reuses frame 3's probabilities, or, detecting on
# frames 0, 3, 6, 9, on frame 3 (detector image 1); (track 1's first frame, its frames, crops of the video)
@pytest.mark.parametrize("detect_every, face1_from, first1, frames1, crops", [(1, 4, 4, 6, 4 + 2), (3, 1, 3, 7, 4 + 3)])
def test_classify_every_reuses_the_tracks_last_probabilities(checkpoint, tmp_path, detect_every, face1_from, first1,
                                                             frames1, crops):
    video = _write_video(tmp_path / "clip.mp4", _frames(10))
    photo = _frames(1, seed=5)[0]

    def run(classify_every=None):
        det = _ScriptedDetector(step=(12.0, 0.0), face1_from=face1_from)
        p = Predictor.from_checkpoint(checkpoint, device="cpu", detector=det)
        calls = _count_crops(p)
        kw = {} if classify_every is None else {"classify_every": classify_every}
        # a photo after the video (the scripted detector finds both faces there too): never tracked, so classified
        table = p.predict([video, photo], progress=False, window=4, batch_size=3, detect_every=detect_every,
                          smooth=0.0, **kw)
        return table, sum(calls)

    full, n_full = run()  # the default: every face of every frame
    assert full.attrs["classify_every"] == 1 and n_full == len(full) == 2 + 10 + frames1
    table, n = run(classify_every=3)
    assert table.attrs["classify_every"] == 3 and len(table) == len(full)
    # track 0 on frames 0, 3, 6, 9; track 1 on its first frame, then every 3rd; and the photo's two faces
    assert n == crops + 2
    vid = table[table["source"] == str(video)]
    assert vid["track_id"].tolist() == full[full["source"] == str(video)]["track_id"].tolist()
    assert vid["label"].notna().all() and vid.filter(like="prob_").notna().all().all()
    got, ref = _probs_by_track(vid), _probs_by_track(full[full["source"] == str(video)])
    first = {0: 0, 1: first1}
    for (frame, tid), probs in got.items():
        key = frame - (frame - first[tid]) % 3  # the track's last classified frame
        np.testing.assert_allclose(probs, ref[(key, tid)], atol=1e-6)
        if key != frame:  # a carried row: the same probabilities and label as the row it reuses
            assert vid[(vid["frame"] == frame) & (vid["track_id"] == tid)]["label"].item() == \
                vid[(vid["frame"] == key) & (vid["track_id"] == tid)]["label"].item()
    photos = table[table["source"] == "array:0"], full[full["source"] == "array:0"]
    np.testing.assert_allclose(photos[0].filter(like="prob_").to_numpy(float),
                               photos[1].filter(like="prob_").to_numpy(float), atol=1e-6)


def test_classify_every_smooths_the_reused_probabilities(checkpoint, tmp_path):
    video = _write_video(tmp_path / "clip.mp4", _frames(9, seed=3))

    def run(smooth):
        det = _ScriptedDetector(face1_until=4)  # face 1 leaves after frame 3
        return Predictor.from_checkpoint(checkpoint, device="cpu", detector=det).predict(
            video, progress=False, smooth=smooth, batch_size=4, window=2, classify_every=2)

    raw, sm = run(0.0), run(0.7)
    prob = [f"prob_{c}" for c in CLASSES]
    for tid, g in raw.groupby("track_id"):
        p = g[prob].to_numpy(dtype=float)  # (T, K): each classified frame's probabilities, then reused once
        np.testing.assert_allclose(p[1::2], p[0::2][:len(p[1::2])], atol=1e-6)
        s = [p[0]]
        for row in p[1:]:  # the smoother sees a reused frame as one more frame of the same evidence
            s.append(0.7 * s[-1] + 0.3 * row)
        np.testing.assert_allclose(sm[sm["track_id"] == tid][prob].to_numpy(dtype=float), np.array(s), atol=1e-6)


def test_classify_every_refuses_bad_values(checkpoint):
    from lanfer.predict import TrackingOptions

    p = Predictor.from_checkpoint(checkpoint, device="cpu", detector=_ScriptedDetector())
    for bad in (0, -2, 1.5, "2", None, float("nan")):
        with pytest.raises(ValueError, match=re.escape(f"classify_every must be a whole number of frames >= 1, "
                                                       f"got {bad!r}")):
            p.predict(_frames(1), progress=False, classify_every=bad)
        with pytest.raises(ValueError, match="classify_every"):
            TrackingOptions(classify_every=bad)
    assert TrackingOptions(classify_every=4.0).classify_every == 4 and TrackingOptions().classify_every == 1


def test_cli_track_ids_in_csv_and_json(checkpoint, two_faces, tmp_path, capsys):
    from PIL import Image

    from lanfer.cli import _args, main
    from lanfer.predict.predictor import SMOOTH

    assert _args.SMOOTH == SMOOTH  # the CLI's default (kept apart so that --help needs no torch)
    Image.fromarray(two_faces).save(tmp_path / "two.png")
    video = _write_video(tmp_path / "clip.mp4", [np.roll(two_faces, 2 * i, axis=1) for i in range(6)])
    out = tmp_path / "run"
    rc = main(["predict", str(checkpoint), str(tmp_path / "two.png"), str(video), "--out", str(out),
               "--detect-every", "2", "--smooth", "0.3", "--no-progress", "--device", "cpu", "--format", "json"])
    assert rc == 0 and "12 faces in 6 frames (0 without a face), 2 tracks" in capsys.readouterr().out
    rows = json.loads((out / "predictions.json").read_text())
    assert [r["track_id"] for r in rows if r["source"].endswith("two.png")] == [None, None]
    vid = [r for r in rows if r["source"] == str(video)]
    assert len(vid) == 12 and sorted({r["track_id"] for r in vid}) == [0, 1]
    assert [r["score"] is None for r in vid] == [False, False, True, True] * 3  # frames 1, 3, 5 carried
    rc = main(["predict", str(checkpoint), str(video), "--out", str(out), "--no-progress", "--device", "cpu"])
    csv = pd.read_csv(out / "predictions.csv")
    assert rc == 0 and list(csv.columns[:4]) == ["source", "frame", "face", "track_id"]
    assert csv["track_id"].tolist() == [0, 1] * 6
    rc = main(["predict", str(checkpoint), str(video), "--out", str(out), "--no-progress", "--device", "cpu",
               "--classify-every", "2", "--smooth", "0"])
    every2 = pd.read_csv(out / "predictions.csv")
    prob = [f"prob_{c}" for c in CLASSES]
    assert rc == 0 and every2["track_id"].tolist() == [0, 1] * 6
    # frames 1, 3, 5 reuse frames 0, 2, 4 (each track's rows: face 0 then face 1 in every frame)
    np.testing.assert_allclose(every2[prob].to_numpy()[2::4], every2[prob].to_numpy()[0::4], atol=1e-6)
    np.testing.assert_allclose(every2[prob].to_numpy()[3::4], every2[prob].to_numpy()[1::4], atol=1e-6)
    for bad in (["--detect-every", "0"], ["--classify-every", "0"], ["--classify-every", "1.5"], ["--smooth", "1"],
                ["--smooth", "x"]):
        with pytest.raises(SystemExit) as e:
            main(["predict", str(video), *bad])
        assert e.value.code == 2
    assert "expected" in capsys.readouterr().err


def test_overlays_name_the_track():
    from lanfer.predict import annotate

    image = np.zeros((200, 300, 3), np.uint8)
    probs = np.eye(7)[3]
    box = (20, 100, 120, 190)
    plain = annotate(image, [dict(box=box, probs=probs)], CLASSES)
    tracked = annotate(image, [dict(box=box, probs=probs, track_id=3)], CLASSES)

    def label_width(out):  # the label's band above the box: the columns with any drawn pixel
        return int((out[70:98, :].max(axis=(0, 2)) > 0).sum())

    assert label_width(tracked) > label_width(plain) > 20  # "#3 happy 1.00" is longer than "happy 1.00"


def test_cli_backend_onnx_gives_the_torch_rows(checkpoint, two_faces, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from lanfer.cli import main

    video = _write_video(tmp_path / "clip.mp4", [np.roll(two_faces, 2 * i, axis=1) for i in range(4)])
    tables = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        rc = main(["predict", str(checkpoint), str(video), "--out", str(out), "--backend", backend, "--detect-every",
                   "2", "--no-progress", "--device", "cpu"])
        assert rc == 0 and f"frames/s, {backend})" in capsys.readouterr().out  # the summary names the backend
        tables[backend] = pd.read_csv(out / "predictions.csv")
    t, o = tables["torch"], tables["onnx"]
    assert len(t) == 8 and t["track_id"].tolist() == o["track_id"].tolist()
    prob = [f"prob_{c}" for c in CLASSES]
    assert np.abs(t[prob].to_numpy() - o[prob].to_numpy()).max() < 1e-4
