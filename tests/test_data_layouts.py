"""Readers of the official dataset layouts, each checked against a tiny copy written here in that format.

Each fixture writes the real file names, headers and codes (and their awkward cases); images are solid
colours whose value encodes the sample, so a test can tell that image and label stayed paired.
"""
from __future__ import annotations

import csv
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from lanfer.data import DataError, build_dataset
from lanfer.data.affectnet import AFFECTNET_CODES
from lanfer.data.ferplus import ferplus_majority, ferplus_probability, ferplus_votes
from lanfer.data.kdef import KDEF_FACE_BOX, kdef_folds, parse_kdef_name


def solid(path, value, size=(16, 16), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, 128)
    Image.new(mode, size, colour).save(path)


def red(image) -> int:
    return int(np.asarray(image.convert("RGB"))[..., 0].mean().round())


# ------------------------------------------------------------------------------------------------ RAF-DB

RAF_ROWS = [("train_00001.jpg", 5), ("train_00002.jpg", 1), ("train_00003.jpg", 7), ("train_00004.jpg", 4),
            ("test_0001.jpg", 4), ("test_0002.jpg", 1), ("test_0009.jpg", 6)]


def write_rafdb(tmp_path, rows=RAF_ROWS, extra_lines=()):
    base = tmp_path / "RAF-DB" / "basic"
    lines = [f"{name} {code}" for name, code in rows] + list(extra_lines)
    (base / "EmoLabel").mkdir(parents=True)
    (base / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for k, (name, _) in enumerate(rows):
        stem = name[:-4]
        solid(base / "Image" / "aligned" / f"{stem}_aligned.jpg", 20 * k + 10)
        solid(base / "Image" / "original" / name, 20 * k + 10, size=(40, 30))
    return base


def test_rafdb_labels_splits_and_class_order(tmp_path):
    base = write_rafdb(tmp_path)
    train = build_dataset("rafdb", base, "train")
    test = build_dataset("rafdb", base.parent, "test")  # the folder above basic/ works too
    assert train.classes == ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
    assert len(train) == 4 and len(test) == 3
    assert train.targets == [4, 0, 6, 3]  # file labels 5, 1, 7, 4 minus one
    assert test.targets == [3, 0, 5]
    image, label, meta = train[2]
    assert image.size == (16, 16) and label == 6 and red(image) == pytest.approx(50, abs=3)
    assert meta["line"] == 3 and meta["path"].endswith("Image/aligned/train_00003_aligned.jpg")
    assert train.report["rows"] == 4 and train.report["expected"] == 12271
    original = build_dataset("rafdb", base, "train", images="original")
    assert original[0][0].size == (40, 30)
    with pytest.raises(DataError, match="no validation split"):
        build_dataset("rafdb", base, "val")


@pytest.mark.parametrize("bad_line, message", [
    ("train_00005.jpg", "malformed line"),
    ("train_00005.jpg 8", "outside 1..7"),
    ("valid_0001.jpg 3", "neither 'train_' nor 'test_'"),
])
def test_rafdb_bad_lines_name_file_and_line(tmp_path, bad_line, message):
    base = write_rafdb(tmp_path, extra_lines=[bad_line])
    with pytest.raises(DataError, match=message) as e:
        build_dataset("rafdb", base, "train")
    assert "list_patition_label.txt:8" in str(e.value)
    with pytest.warns(UserWarning, match="skipped 1 bad"):
        ds = build_dataset("rafdb", base, "train", skip_bad=True)
    assert len(ds) == 4 and ds.report["bad"] == 1


def test_rafdb_missing_and_corrupt_images(tmp_path):
    base = write_rafdb(tmp_path)
    (base / "Image" / "aligned" / "test_0002_aligned.jpg").unlink()
    with pytest.raises(DataError, match=r"list_patition_label.txt:6: image .*test_0002_aligned.jpg"):
        build_dataset("rafdb", base, "test")
    with pytest.warns(UserWarning):
        ds = build_dataset("rafdb", base, "test", skip_bad=True)
    assert len(ds) == 2 and ds.report == {**ds.report, "rows": 3, "bad": 1, "kept": 2}

    (base / "Image" / "aligned" / "test_0001_aligned.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    ds.skip_bad = False
    with pytest.raises(DataError, match=r"test_0001_aligned.jpg.*could not be decoded.*list_patition_label.txt:5"):
        ds[0]
    ds.skip_bad = True
    with pytest.warns(UserWarning, match="skipping bad image"):
        image, label, _ = ds[0]
    assert label == ds.targets[1] and len(ds.bad) == 1  # replaced by the next item, and counted


def _folder_with_corrupt(tmp_path, corrupt):
    """imagefolder with five images in test/happy (red value 10*i), the ones at ``corrupt`` not images."""
    for i in range(5):
        path = tmp_path / "test" / "happy" / f"{i}.png"
        solid(path, 10 * i)
        if i in corrupt:
            path.write_bytes(b"not a png")
    return tmp_path


def test_skip_bad_counts_and_names_each_bad_image_once(tmp_path):
    ds = build_dataset("imagefolder", _folder_with_corrupt(tmp_path, {1, 3}), "test", skip_bad=True)
    with pytest.warns(UserWarning, match="skipping bad image"):
        reds = [red(ds[i][0]) for i in range(len(ds))]
    assert reds == [0, 20, 20, 40, 40]  # each bad image is replaced by the next good one
    assert sorted(ds.bad) == [str(tmp_path / "test" / "happy" / f"{i}.png") for i in (1, 3)]
    assert all("could not be decoded" in reason for reason in ds.bad.values())
    for i in range(len(ds)):  # a second epoch: known bad files are neither decoded nor counted again
        ds[i]
    assert len(ds.bad) == 2
    ds.skip_bad = False
    with pytest.raises(DataError, match=r"image file .*1\.png.* could not be decoded"):
        ds[1]


def test_all_bad_dataset_raises_a_clear_error(tmp_path):
    ds = build_dataset("imagefolder", _folder_with_corrupt(tmp_path, set(range(5))), "test", skip_bad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="all 5 images failed to decode"):
            ds[2]
    assert len(ds.bad) == 5


# ------------------------------------------------------------------------------------------------ FERPlus

HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
# (usage, name, votes, majority label or None); names skip numbers after an empty row, like the real file.
FERPLUS_ROWS = [
    ("Training", "fer0000000.png", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0], None),     # 4 of 9 after outliers
    ("Training", "fer0000001.png", [6, 0, 1, 1, 0, 0, 0, 0, 2, 0], 0),
    ("Training", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], None),                   # no image: skipped
    ("Training", "fer0000002.png", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0], 1),
    ("Training", "fer0000003.png", [0, 0, 6, 0, 0, 0, 4, 0, 0, 0], 2),
    ("PublicTest", "fer0000004.png", [2, 0, 0, 0, 0, 0, 0, 0, 7, 1], None),   # unknown wins
    ("PublicTest", "fer0000005.png", [0, 0, 0, 8, 0, 0, 0, 2, 0, 0], 3),
    ("PrivateTest", "fer0000006.png", [0, 0, 0, 0, 0, 0, 0, 7, 3, 0], 7),
    ("PrivateTest", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], None),
    ("PrivateTest", "fer0000008.png", [1, 0, 0, 0, 9, 0, 0, 0, 0, 0], 4),
    ("PrivateTest", "fer0000009.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], None),  # not a face
]
FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}


def write_ferplus(tmp_path, layout="folders"):
    root = tmp_path / "FERPlus"
    root.mkdir()
    with open(root / "fer2013new.csv", "w", newline="") as fh:
        fh.write(HEADER + "\n")
        w = csv.writer(fh)
        for usage, name, votes, _ in FERPLUS_ROWS:
            w.writerow([usage, name] + votes)
    if layout == "folders":
        for k, (usage, name, _, _) in enumerate(FERPLUS_ROWS):
            if name:
                solid(root / FOLDERS[usage] / name, 10 * k + 5, size=(48, 48), mode="L")
    else:  # Kaggle's fer2013.csv: same rows, same order, pixels encode the row
        with open(root / "fer2013.csv", "w", newline="") as fh:
            fh.write("emotion,pixels,Usage\n")
            for k, (usage, _, _, _) in enumerate(FERPLUS_ROWS):
                fh.write(f"3,{' '.join([str(10 * k + 5)] * 2304)},{usage}\n")
    return root


@pytest.mark.parametrize("layout", ["folders", "csv"])
def test_ferplus_majority_labels_and_splits(tmp_path, layout):
    root = write_ferplus(tmp_path, layout)
    expect = {u: [(k, lab) for k, (use, name, _, lab) in enumerate(FERPLUS_ROWS)
                  if use == u and name and lab is not None] for u in FOLDERS}
    for split, usage in [("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")]:
        ds = build_dataset("ferplus", root, split)
        assert ds.classes == ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
        assert ds.targets == [lab for _, lab in expect[usage]]
        for i, (k, _) in enumerate(expect[usage]):
            assert red(ds[i][0]) == pytest.approx(10 * k + 5, abs=1)  # image paired with its own row
    train = build_dataset("ferplus", root, "train")
    assert train.report["dropped"] == {"no_image_name": 1, "no_majority": 1}
    test = build_dataset("ferplus", root, "test")
    assert test.report["dropped"] == {"no_image_name": 1, "not_a_face": 1} and test.report["rows"] == 4


def test_ferplus_vote_rules_by_hand():
    # hand-computed with FERPlus's rules: votes of 1 removed, then majority / top-classes-to-75%
    assert ferplus_majority([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]) is None
    assert ferplus_probability([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]) == pytest.approx([4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0])
    assert ferplus_probability([6, 0, 1, 1, 0, 0, 0, 0, 2, 0]) == pytest.approx([1, 0, 0, 0, 0, 0, 0, 0])
    assert ferplus_probability([0, 0, 6, 0, 0, 0, 4, 0, 0, 0]) == pytest.approx([0, 0, .6, 0, 0, 0, .4, 0])
    assert ferplus_probability([5, 0, 5, 0, 0, 0, 0, 0, 0, 0]) == pytest.approx([.5, 0, .5, 0, 0, 0, 0, 0])
    assert ferplus_probability([0] * 9 + [10]) is None
    assert ferplus_majority([1] * 10) is None and ferplus_probability([1] * 10) is None
    assert ferplus_majority([5, 0, 5, 0, 0, 0, 0, 0, 0, 0]) is None  # exactly half is not a majority
    assert ferplus_majority([2, 0, 0, 0, 0, 0, 0, 0, 7, 1]) is None  # unknown
    assert ferplus_votes([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]) == pytest.approx([.4, 0, 0, .1, .3, .2, 0, 0])


def test_ferplus_soft_label_modes(tmp_path):
    root = write_ferplus(tmp_path)
    ds = build_dataset("ferplus", root, "train", label_mode="probability")
    assert len(ds) == 4  # fer0000000 is kept with a soft label here
    assert ds.samples[0].label == pytest.approx([4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0])
    _, label, _ = ds[0]
    assert label.dtype.is_floating_point and label.shape == (8,)
    with pytest.raises(DataError, match="label_mode"):
        build_dataset("ferplus", root, "train", label_mode="soft")


def test_ferplus_kaggle_rows_must_pair(tmp_path):
    root = write_ferplus(tmp_path, "csv")
    text = (root / "fer2013.csv").read_text().splitlines()
    (root / "fer2013.csv").write_text("\n".join(text[:1] + text[2:]) + "\n")  # one row missing
    with pytest.raises(DataError, match="Usage|rows"):
        build_dataset("ferplus", root, "test")


def test_ferplus_folder_label_csv_and_missing_image(tmp_path):
    root = tmp_path / "data"
    rows = [("fer0032220.png", [0, 0, 0, 0, 2, 1, 0, 7, 0, 0]), ("fer0032222.png", [3, 0, 0, 6, 0, 0, 0, 0, 1, 0])]
    (root / "FER2013Test").mkdir(parents=True)
    with open(root / "FER2013Test" / "label.csv", "w") as fh:
        for name, votes in rows:  # FERPlus's per-folder label.csv, with the face-box column
            fh.write(f'{name},"(0, 0, 48, 48)",{",".join(map(str, votes))}\n')
    for k, (name, _) in enumerate(rows):
        solid(root / "FER2013Test" / name, 40 + k, size=(48, 48), mode="L")
    ds = build_dataset("ferplus", tmp_path, "test")
    assert ds.targets == [7, 3] and ds.report["source"].endswith("label.csv")
    (root / "FER2013Test" / "fer0032222.png").unlink()
    with pytest.raises(DataError, match=r"label.csv:2: image .*fer0032222.png"):
        build_dataset("ferplus", tmp_path, "test")


# ------------------------------------------------------------------------------------------------ AffectNet

COLUMNS = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,"
           "arousal")


def hexname(k):
    return f"{k:02x}" * 28  # 56 hex digits, like AffectNet's file names


def write_affectnet(tmp_path, train_codes=(0, 1, 7, 8, 9, 10, 6), val_codes=(0, 7, 3, 8)):
    root = tmp_path / "AffectNet"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    landmarks = ";".join(["10.5"] * 136)
    k = 0
    for name, codes, header in (("training.csv", train_codes, True), ("validation.csv", val_codes, False)):
        lines = [COLUMNS] if header else []  # validation.csv as distributed: no header line
        for code in codes:
            rel = f"{100 + k}/{hexname(k)}.jpg"
            solid(root / "Manually_Annotated_Images" / rel, 10 * k + 5, size=(120, 100))
            lines.append(f"{rel},20,10,40,40,{landmarks},{code},0.25,-0.5")
            k += 1
        (lists / name).write_text("\n".join(lines) + "\n")
    return root


def test_affectnet_codes_classes_and_splits(tmp_path):
    root = write_affectnet(tmp_path)
    train = build_dataset("affectnet", root, "train")
    assert train.classes == AFFECTNET_CODES[:8]
    assert train.targets == [0, 1, 7, 6]
    assert train.report["dropped"] == {"none": 1, "uncertain": 1, "no_face": 1}
    seven = build_dataset("affectnet", root, "train", num_classes=7)
    assert seven.classes == AFFECTNET_CODES[:7] and seven.targets == [0, 1, 6]
    assert seven.report["dropped"]["contempt_in_7_class"] == 1
    val, test = build_dataset("affectnet", root, "val"), build_dataset("affectnet", root, "test")
    assert val.targets == test.targets == [0, 7, 3]  # header-less validation.csv, codes 8+ dropped
    assert val.report["rows"] == 4 and val.report["expected"] == 4000
    image, label, meta = train[1]
    assert image.size == (40, 40) and red(image) == pytest.approx(15, abs=3)  # cropped to the face box
    assert meta["valence"] == 0.25 and meta["arousal"] == -0.5
    assert build_dataset("affectnet", root, "train", crop="none")[1][0].size == (120, 100)


def test_affectnet_crop_auto_keeps_precropped_images(tmp_path):
    root = write_affectnet(tmp_path)
    rel = f"100/{hexname(0)}.jpg"
    solid(root / "Manually_Annotated_Images" / rel, 5, size=(32, 32))  # a face crop: the box lies outside
    ds = build_dataset("affectnet", root, "train")
    assert ds[0][0].size == (32, 32)
    assert build_dataset("affectnet", root, "train", crop="bbox")[0][0].size == (12, 22)  # clipped box


def test_affectnet_bad_rows(tmp_path):
    root = write_affectnet(tmp_path, val_codes=(0, 11))
    with pytest.raises(DataError, match=r"validation.csv:2: expression '11'"):
        build_dataset("affectnet", root, "val")
    with open(root / "Manually_Annotated_file_lists" / "validation.csv", "a") as fh:
        fh.write("999/missing.jpg,1,1,5,5,,2,0,0\nshort,row\n")
    with pytest.warns(UserWarning, match="skipped 3 bad"):
        ds = build_dataset("affectnet", root, "val", skip_bad=True)
    assert ds.targets == [0] and ds.report["bad"] == 3


def test_affectnet_newer_release(tmp_path):
    root = tmp_path / "AffectNetV2"
    codes = {"0": np.array("3"), "1": np.array(7), "2": np.array("9"), "10": np.array("1")}
    for stem, code in codes.items():
        solid(root / "val_set" / "images" / f"{stem}.jpg", 50, size=(24, 24))
        (root / "val_set" / "annotations").mkdir(parents=True, exist_ok=True)
        np.save(root / "val_set" / "annotations" / f"{stem}_exp.npy", code)
    ds = build_dataset("affectnet", root, "test")
    assert ds.targets == [3, 7, 1] and ds.report["dropped"] == {"uncertain": 1}
    assert ds[0][0].size == (24, 24)


# ------------------------------------------------------------------------------------------------ KDEF


def write_kdef(tmp_path, subjects=10, expressions=("AF", "AN", "DI", "HA", "NE", "SA", "SU"),
               views=("FL", "HL", "S", "HR", "FR"), sessions="AB", size=(8, 8)):
    base = tmp_path / "KDEF"
    half = subjects // 2
    people = [f"F{i + 1:02d}" for i in range(half)] + [f"M{i + 1:02d}" for i in range(subjects - half)]
    for p in people:
        for s in sessions:
            for e in expressions:
                for v in views:
                    solid(base / f"{s}{p}" / f"{s}{p}{e}{v}.JPG", 100, size=size)
    return base


def test_kdef_names_labels_and_metadata(tmp_path):
    assert parse_kdef_name("AF01ANS.JPG") == {"session": "A", "sex": "F", "subject": "F01", "expression": "AN",
                                             "label": 1, "view": "S", "yaw": 0}
    assert parse_kdef_name("BM35SUFR.jpg")["yaw"] == 90 and parse_kdef_name("AF01ANXX.JPG") is None
    base = write_kdef(tmp_path, subjects=10, expressions=("AF", "SU"), views=("FL", "S"), sessions="AB")
    ds = build_dataset("kdef", tmp_path, "all")  # the folder holding KDEF/ works as root
    assert ds.classes == ["afraid", "angry", "disgusted", "happy", "neutral", "sad", "surprised"]
    assert len(ds) == 10 * 2 * 2 * 2 and sorted(set(ds.targets)) == [0, 6]
    _, label, meta = ds[0]
    assert meta["path"].endswith("AF01/AF01AFFL.JPG") and label == 0
    assert {k: meta[k] for k in ("subject", "session", "sex", "view", "yaw")} == \
        {"subject": "F01", "session": "A", "sex": "F", "view": "FL", "yaw": -90}
    assert len(build_dataset("kdef", base, "all", views=["S"])) == 40


def test_kdef_folds_are_identity_disjoint_and_deterministic(tmp_path):
    base = write_kdef(tmp_path, subjects=20, expressions=("HA", "SA"), views=("S", "HL"))
    seen = {}
    for k in range(10):
        train = build_dataset("kdef", base, "train", fold=k)
        test = build_dataset("kdef", base, "test", fold=k)
        test_people = {m["subject"] for m in (s.meta for s in test.samples)}
        train_people = {m["subject"] for m in (s.meta for s in train.samples)}
        assert len(test_people) == 2 and not test_people & train_people  # sessions A and B stay together
        assert {s.meta["sex"] for s in test.samples} == {"F", "M"}
        assert len(train) + len(test) == 160
        for s in test.samples:
            assert s.path not in seen
            seen[s.path] = k
    assert len(seen) == 160  # every image is tested exactly once
    again = build_dataset("kdef", base, "test", fold=3)
    assert [s.path for s in again.samples] == [p for p, k in seen.items() if k == 3]
    other = build_dataset("kdef", base, "test", fold=3, seed=1)
    assert [s.path for s in other.samples] != [s.path for s in again.samples]
    summary = kdef_folds(base, folds=10)
    assert [f["n_test"] for f in summary] == [16] * 10
    assert summary[3]["test_subjects"] == sorted({s.meta["subject"] for s in again.samples})


def test_kdef_image_folds_stratified(tmp_path):
    base = write_kdef(tmp_path, subjects=4, views=("S", "HL", "HR", "FL", "FR"), sessions="A")
    counts = []
    for k in range(5):
        test = build_dataset("kdef", base, "test", fold=k, folds=5, fold_by="image")
        counts.append(np.bincount(test.targets, minlength=7))
    assert np.array_equal(np.sum(counts, axis=0), [20] * 7)
    assert all(c.max() - c.min() <= 1 for c in np.array(counts).T)  # each expression spread evenly
    with pytest.raises(DataError, match="identity-disjoint"):
        build_dataset("kdef", base, "test", fold=0, folds=10)


def test_kdef_portrait_crop_and_square_synthetic(tmp_path):
    base = write_kdef(tmp_path, subjects=10, expressions=("NE",), views=("S",), sessions="A", size=(32, 32))
    solid(base / "AF01" / "AF01NES.JPG", 90, size=(281, 381))  # a half-size KDEF portrait
    ds = build_dataset("kdef", base, "all")
    l, t, r, b = KDEF_FACE_BOX
    assert ds[0][0].size == (round((r - l) / 2), round((b - t) / 2))
    assert ds[1][0].size == (32, 32)  # square renders (the synthetic KDEF set) are left as they are
    assert build_dataset("kdef", base, "all", crop="none")[0][0].size == (281, 381)


def test_kdef_bad_names(tmp_path):
    base = write_kdef(tmp_path, subjects=10, expressions=("NE",), views=("S",), sessions="A")
    solid(base / "AF01" / "AF01XXS.JPG", 1)
    with pytest.raises(DataError, match="AF01XXS.JPG.*not KDEF"):
        build_dataset("kdef", base, "all")
    with pytest.warns(UserWarning, match="skipped 1 bad"):
        assert len(build_dataset("kdef", base, "all", skip_bad=True)) == 10


# ------------------------------------------------------------------------------------------------ FER2013


def write_fer2013(tmp_path, icml=False):
    path = tmp_path / ("icml_face_data.csv" if icml else "fer2013.csv")
    usages = ["Training", "Training", "PublicTest", "PrivateTest", "PrivateTest"]
    with open(path, "w") as fh:
        fh.write("emotion, Usage, pixels\n" if icml else "emotion,pixels,Usage\n")
        for k, usage in enumerate(usages):
            pixels = " ".join([str(30 * k)] * 2304)
            fh.write(f"{k},{usage},{pixels}\n" if icml else f"{k},{pixels},{usage}\n")
    return path


@pytest.mark.parametrize("icml", [False, True])
def test_fer2013_csv(tmp_path, icml):
    write_fer2013(tmp_path, icml)
    train = build_dataset("fer2013", tmp_path, "train")
    assert train.classes == ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    assert train.targets == [0, 1]
    assert build_dataset("fer2013", tmp_path, "val").targets == [2]
    test = build_dataset("fer2013", tmp_path, "test")
    assert test.targets == [3, 4] and red(test[1][0]) == 120 and test[1][0].size == (48, 48)


def test_fer2013_bad_rows_and_folders(tmp_path):
    path = write_fer2013(tmp_path)
    with open(path, "a") as fh:
        fh.write("7," + " ".join(["1"] * 2304) + ",Training\n")
        fh.write("2," + " ".join(["1"] * 2303) + ",Training\n")
        fh.write("\u00b2," + " ".join(["1"] * 2304) + ",Training\n")  # a digit to str.isdigit, not to int()
    with pytest.raises(DataError, match=r"fer2013.csv:7: emotion '7'"):
        build_dataset("fer2013", tmp_path, "train")
    with pytest.warns(UserWarning, match="skipped 3 bad"):
        assert len(build_dataset("fer2013", tmp_path, "train", skip_bad=True)) == 2

    folders = tmp_path / "release"
    for split, names in (("train", ["angry", "happy", "neutral"]), ("test", ["surprise"])):
        for name in names:
            solid(folders / split / name / "im0.jpg", 10)
    assert build_dataset("fer2013", folders, "train").targets == [0, 3, 6]
    assert build_dataset("fer2013", folders, "test").targets == [5]
    with pytest.raises(DataError, match="no validation split"):
        build_dataset("fer2013", folders, "val")


# ------------------------------------------------------------------------------------------------ options


def test_unknown_options_and_classes_are_rejected(tmp_path):
    base = write_rafdb(tmp_path)
    with pytest.raises(DataError, match="unknown option 'num_clases'"):
        build_dataset("rafdb", base, "train", num_clases=7)
    with pytest.raises(DataError, match="label order"):
        build_dataset("rafdb", base, "train", classes=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_dataset("rafdb", base, "train", classes=None)


# ------------------------------------------------------------------------------------------------ pose lists


def test_pose_list_rafdb(tmp_path):
    base = write_rafdb(tmp_path)
    lst = tmp_path / "val_raf_db_list_45.txt"
    lst.write_text("3/test_0001_aligned.jpg\n5/test_0009_aligned.jpg\n")
    with pytest.warns(UserWarning, match="paper reports 558 images for Pose-RAF-DB-45"):
        ds = build_dataset("rafdb", base, "test", subset=lst)
    assert [s.path.split("/")[-1] for s in ds.samples] == ["test_0001_aligned.jpg", "test_0009_aligned.jpg"]
    assert ds.targets == [3, 5]
    assert ds.subset_info == {"file": str(lst), "name": "Pose-RAF-DB-45", "lines": 2, "matched": 2,
                              "expected": 558, "missing": 0, "label_mismatches": 0, "duplicates": 0,
                              "labelled_from_list": 0, "examples": [], "mismatch_entries": [],
                              "from_list_entries": []}
    assert ds.report["before_subset"] == 3 and ds.report["kept"] == 2
    # the original (unaligned) images match the same list by name
    with pytest.warns(UserWarning):
        assert len(build_dataset("rafdb", base, "test", subset=lst, images="original")) == 2


def test_pose_list_found_next_to_the_dataset(tmp_path):
    base = write_rafdb(tmp_path)
    (base / "EmoLabel" / "my_list.txt").write_text("0/test_0002_aligned.jpg\n")
    assert build_dataset("rafdb", base, "test", subset="my_list.txt").targets == [0]
    with pytest.raises(DataError, match="does not exist"):
        build_dataset("rafdb", base, "test", subset="nowhere.txt")


def test_pose_list_bad_entries(tmp_path):
    base = write_rafdb(tmp_path)
    lst = tmp_path / "list.txt"
    lst.write_text("3/test_0001_aligned.jpg\n1/test_0404_aligned.jpg\n")
    with pytest.raises(DataError, match=r"list.txt:2: entry 'test_0404_aligned.jpg' not found"):
        build_dataset("rafdb", base, "test", subset=lst)
    with pytest.warns(UserWarning, match="skipped 1 entries"):
        ds = build_dataset("rafdb", base, "test", subset=lst, skip_bad=True)
    assert len(ds) == 1 and ds.subset_info["missing"] == 1 and ds.subset_info["lines"] == 2

    lst.write_text("3/test_0001_aligned.jpg\ntest_0002_aligned.jpg\n")
    with pytest.raises(DataError, match=r"list.txt:2: malformed entry"):
        build_dataset("rafdb", base, "test", subset=lst)
    lst.write_text("9/test_0001_aligned.jpg\n")
    with pytest.raises(DataError, match=r"list.txt:1: label 9 is outside 0..6"):
        build_dataset("rafdb", base, "test", subset=lst)


def test_pose_list_label_mismatch_and_duplicates(tmp_path):
    base = write_rafdb(tmp_path)
    lst = tmp_path / "list.txt"
    lst.write_text("3/test_0001_aligned.jpg\n0/test_0002_aligned.jpg\n4/test_0009_aligned.jpg\n"
                   "0/test_0002_aligned.jpg\n")
    with pytest.warns(UserWarning) as record:
        ds = build_dataset("rafdb", base, "test", subset=lst)
    text = " ".join(str(w.message) for w in record)
    assert "list label 4 (Sadness) vs dataset label 5 (Anger)" in text and "repeated" in text
    assert ds.targets == [3, 0, 5]  # the dataset's own label is kept
    assert ds.subset_info["label_mismatches"] == 1 and ds.subset_info["duplicates"] == 1
    lst.write_text("0/test_0001_aligned.jpg\n1/test_0009_aligned.jpg\n")  # wrong class order
    with pytest.raises(DataError, match="class order"):
        build_dataset("rafdb", base, "test", subset=lst)


def test_pose_list_ferplus_png_and_dropped_images(tmp_path):
    root = write_ferplus(tmp_path)
    lst = tmp_path / "pose_30_ferplus_list.txt"
    lst.write_text("7/fer0000006.jpg\n4/fer0000008.jpg\n")  # the lists say .jpg, FERPlus writes .png
    with pytest.warns(UserWarning, match="1171"):
        ds = build_dataset("ferplus", root, "test", subset=lst)
    assert ds.targets == [7, 4]
    # a published subset is evaluated whole: an entry the vote rule leaves out gets the list's label, reported
    lst.write_text("7/fer0000006.jpg\n0/fer0000009.jpg\n")
    with pytest.warns(UserWarning):
        ds = build_dataset("ferplus", root, "test", subset=lst)
    assert ds.targets == [7, 0] and ds.subset_info["labelled_from_list"] == 1
    assert re.search(r"list.txt:2: fer0000009.png has no label .*not_a_face.*list's neutral",
                     ds.subset_info["from_list_entries"][0])
    # an entry with no image at all is still an error naming the line
    lst.write_text("7/fer0000006.jpg\n0/fer0099999.jpg\n")
    with pytest.raises(DataError, match=r"list.txt:2: entry 'fer0099999.jpg' not found"):
        build_dataset("ferplus", root, "test", subset=lst)


def test_pose_list_affectnet_both_forms(tmp_path):
    root = write_affectnet(tmp_path)  # validation rows k = 7..10, codes 0, 7, 3, 8
    l30 = tmp_path / "pose_30_affectnet_list.txt"
    l30.write_text(f"7/{hexname(8)}.jpg\n3/{hexname(9)}.jpg\n")
    l45 = tmp_path / "pose_45_affectnet_list.txt"
    l45.write_text(f"3/{hexname(9)}/8.jpg\n")  # the 45-degree list names <hash>/8.jpg
    with pytest.warns(UserWarning, match="1949"):
        ds30 = build_dataset("affectnet", root, "test", subset=l30)
    with pytest.warns(UserWarning, match="985"):
        ds45 = build_dataset("affectnet", root, "test", subset=l45)
    assert ds30.targets == [7, 3] and ds45.targets == [3]
    l30.write_text(f"7/{hexname(8)}.jpg\n0/{hexname(10)}.jpg\n")  # row k=10 has code 8 (None)
    with pytest.raises(DataError, match=r"list.txt:2: .*label rule .*code 8 \(None\)"):
        build_dataset("affectnet", root, "test", subset=l30)
    assert ds45.samples[0].path.endswith(f"109/{hexname(9)}.jpg")
    with pytest.raises(DataError, match="label 7 is outside 0..6"):  # RAN's lists are 8-class
        build_dataset("affectnet", root, "test", subset=l30, num_classes=7)


def test_pose_list_on_generic_imagefolder(tmp_path):
    for cls, name in (("angry", "a1.png"), ("happy", "h1.png"), ("happy", "h2.png")):
        solid(tmp_path / "test" / cls / name, 10)
    lst = tmp_path / "mine.txt"
    lst.write_text("1/h2.jpg\n0/a1.jpg\n")
    ds = build_dataset("imagefolder", tmp_path, "test", subset=lst)
    assert ds.targets == [0, 1] and ds.subset_info["matched"] == 2 and ds.subset_info["name"] is None
