"""Hostile label and list files: each bad entry is refused with its file and line (strict), or counted in the
dataset's report (``skip_bad``); a test set never changes silently. Files are written here in each dataset's
official format, with one planted fault each."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lanfer.data import DataError, build_dataset
from lanfer.data.base import FERDataset, Sample
from lanfer.data.poselists import restrict_to_list

FER_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
VOTES = "0,10,0,0,0,0,0,0,0,0"


def _rafdb(tmp_path: Path, lines: list[str], raw: bytes | None = None) -> Path:
    root = tmp_path / "basic"
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_bytes(raw if raw is not None else "\n".join(lines).encode())
    return root


RAFDB_CASES = {
    "malformed": ("train_00002.jpg five", 2, "malformed line"),
    "missing column": ("train_00002.jpg", 2, "malformed line"),
    "extra column": ("train_00002.jpg 3 extra", 2, "malformed line"),
    "unknown label": ("train_00002.jpg 9", 2, "label 9 is outside 1..7"),
    "duplicate": ("train_00001.jpg 4", 2, "listed again \\(first at line 1\\)"),
    "climbs out": ("train_/../../../../../etc/passwd 1", 2, "leaves the dataset folder"),
    "unicode digit": ("train_00002.jpg ²", 2, "malformed line"),
}


@pytest.mark.parametrize("case", list(RAFDB_CASES))
def test_rafdb_bad_lines_are_named(tmp_path, case):
    line, line_no, message = RAFDB_CASES[case]
    root = _rafdb(tmp_path, ["train_00001.jpg 1", line, "train_00003.jpg 2"])
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    with pytest.raises(DataError, match=rf"{label_file}:{line_no}: .*{message}"):
        build_dataset("rafdb", root, "train", check_files=False)
    with pytest.warns(UserWarning, match="skipped 1 bad entries"):
        ds = build_dataset("rafdb", root, "train", check_files=False, skip_bad=True)
    assert len(ds) == 2 and ds.report["bad"] == 1


def test_rafdb_bom_and_crlf_read_like_plain_lines_and_bad_bytes_name_the_line(tmp_path):
    root = _rafdb(tmp_path, [], raw="\ufefftrain_00001.jpg 1\r\ntrain_00002.jpg 2\r\n".encode())
    ds = build_dataset("rafdb", root, "train", check_files=False)
    assert [s.label for s in ds.samples] == [0, 1] and ds.samples[0].path.endswith("train_00001_aligned.jpg")
    root = _rafdb(tmp_path, [], raw=b"train_00001.jpg 1\ntrain_0\xff002.jpg 2\n")
    with pytest.raises(DataError, match=r"list_patition_label.txt:\d+: not UTF-8 text"):
        build_dataset("rafdb", root, "train", check_files=False)


def test_a_symlink_out_of_the_dataset_is_refused(tmp_path):
    root = _rafdb(tmp_path, ["train_00001.jpg 1", "train_00002.jpg 2"])
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not yours")
    os.symlink(secret, root / "Image" / "aligned" / "train_00002_aligned.jpg")
    (root / "Image" / "aligned" / "train_00001_aligned.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match=r":2: path 'train_00002_aligned.jpg' is a symbolic link to .*secret.jpg"):
        build_dataset("rafdb", root, "train")
    # a link that stays inside the folder is fine
    os.remove(root / "Image" / "aligned" / "train_00002_aligned.jpg")
    os.symlink("train_00001_aligned.jpg", root / "Image" / "aligned" / "train_00002_aligned.jpg")
    assert len(build_dataset("rafdb", root, "train")) == 2


FERPLUS_CASES = {
    "NaN votes": (f"PrivateTest,fer0000002.png,nan,{VOTES[2:]}", "not 10 non-negative numbers"),
    "inf votes": (f"PrivateTest,fer0000002.png,inf,{VOTES[2:]}", "not 10 non-negative numbers"),
    "missing column": ("PrivateTest,fer0000002.png,0,10,0,0,0,0,0,0,0", "expected 12 columns, found 11"),
    "extra column": (f"PrivateTest,fer0000002.png,{VOTES},0", "expected 12 columns, found 13"),
    "unknown usage": (f"Secret,fer0000002.png,{VOTES}", "Usage 'Secret' is not one of"),
    "climbs out": (f"PrivateTest,../../../etc/passwd,{VOTES}", "leaves the dataset folder"),
    "absolute": (f"PrivateTest,/etc/passwd,{VOTES}", "is absolute"),
}


@pytest.mark.parametrize("case", list(FERPLUS_CASES))
def test_ferplus_bad_rows_are_named(tmp_path, case):
    row, message = FERPLUS_CASES[case]
    (tmp_path / "FER2013Test").mkdir()
    labels = tmp_path / "fer2013new.csv"
    labels.write_text("\n".join([FER_HEADER, f"PrivateTest,fer0000001.png,{VOTES}", row,
                                 f"PrivateTest,fer0000003.png,{VOTES}"]) + "\n")
    with pytest.raises(DataError, match=rf"{labels}:3: .*{message}"):
        build_dataset("ferplus", tmp_path, "test", check_files=False, votes="fer2013new")
    with pytest.warns(UserWarning, match="skipped 1 bad entries"):
        ds = build_dataset("ferplus", tmp_path, "test", check_files=False, votes="fer2013new", skip_bad=True)
    assert len(ds) == 2 and ds.report["bad"] == 1


def test_ferplus_repeated_names_are_kept_as_released_but_named(tmp_path):
    # the real fer2013new.csv repeats 4 names; the published counts include them, so they stay, counted
    (tmp_path / "FER2013Test").mkdir()
    labels = tmp_path / "fer2013new.csv"
    row = f"PrivateTest,fer0000001.png,{VOTES}"
    labels.write_text("\n".join([FER_HEADER, row, row]))
    with pytest.warns(UserWarning, match=r"1 image names of split PrivateTest appear twice .*fer2013new.csv:3: "
                                         r"'fer0000001.png' repeats line 2"):
        ds = build_dataset("ferplus", tmp_path, "test", check_files=False, votes="fer2013new")
    assert len(ds) == 2 and ds.report["duplicates"] == [f"{labels}:3: 'fer0000001.png' repeats line 2"]


def test_ferplus_label_csv_nan_votes_and_paths(tmp_path):
    folder = tmp_path / "FER2013Test"
    folder.mkdir()
    for row, message in [(f"fer0000002.png,nan,{VOTES[2:]}", "expected 'name\\[,box\\],10 vote counts'"),
                         (f"../../x.png,{VOTES}", "leaves the dataset folder"),
                         (f"fer0000001.png,{VOTES}", "listed again")]:
        (folder / "label.csv").write_text(f"fer0000001.png,{VOTES}\r\n{row}\r\n")
        with pytest.raises(DataError, match=rf"label.csv:2: .*{message}"):
            build_dataset("ferplus", tmp_path, "test", check_files=False)


AFFECTNET_CASES = {
    "NaN code": ("1/b.jpg,0,0,10,10,1;2,nan,0.1,0.2", "expression 'nan' is not an AffectNet code"),
    "inf code": ("1/b.jpg,0,0,10,10,1;2,inf,0.1,0.2", "expression 'inf' is not an AffectNet code"),
    "inf box": ("1/b.jpg,0,0,inf,10,1;2,3,0.1,0.2", "face box .* is not four numbers"),
    "missing column": ("1/b.jpg,0,0,10,10,3,0.1,0.2", "expected 9 columns"),
    "duplicate": ("1/a.jpg,0,0,10,10,1;2,3,0.1,0.2", "listed again"),
    "absolute": ("/etc/passwd,0,0,10,10,1;2,3,0.1,0.2", "is absolute"),
}


@pytest.mark.parametrize("case", list(AFFECTNET_CASES))
def test_affectnet_bad_rows_are_named(tmp_path, case):
    row, message = AFFECTNET_CASES[case]
    (tmp_path / "Manually_Annotated_Images").mkdir()
    labels = tmp_path / "validation.csv"
    labels.write_text(f"1/a.jpg,0,0,10,10,1;2,3,0.1,0.2\n{row}\n")
    with pytest.raises(DataError, match=rf"{labels}:2: .*{message}"):
        build_dataset("affectnet", tmp_path, "val", check_files=False, crop="bbox")


CSV_CASES = {
    "missing cell": ("b.png", "expected 2 cells"),
    "extra cell": ("b.png,sad,extra", "expected 2 cells"),
    "empty label": ("b.png,", "empty label"),
    "unknown label": ("b.png,angry", "label 'angry' is not one of the configured classes"),
    "duplicate": ("a.png,sad", "'a.png' is listed again \\(first at line 2\\)"),
    "climbs out": ("../../etc/passwd,sad", "leaves the dataset folder"),
    "absolute": ("/etc/passwd,sad", "is absolute"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_generic_csv_bad_rows_are_named(tmp_path, case):
    row, message = CSV_CASES[case]
    labels = tmp_path / "labels.csv"
    labels.write_bytes(f"\ufeffpath,label\r\na.png,happy\r\n{row}\r\nc.png,sad\r\n".encode())
    with pytest.raises(DataError, match=rf"{labels}:3: .*{message}"):
        build_dataset("csv", tmp_path, "test", classes=["happy", "sad"])
    with pytest.warns(UserWarning, match="skipped 1 bad entries"):
        ds = build_dataset("csv", tmp_path, "test", classes=["happy", "sad"], skip_bad=True)
    assert [Path(s.path).name for s in ds.samples] == ["a.png", "c.png"] and ds.report["bad"] == 1


def test_generic_csv_with_a_nul_byte_names_the_line(tmp_path):
    (tmp_path / "labels.csv").write_bytes(b"path,label\na.png,happy\nb\x00.png,sad\n")
    with pytest.raises(DataError, match=r"labels.csv:3: path 'b\\x00.png' contains a NUL byte"):
        build_dataset("csv", tmp_path, "test")


def test_pose_list_matching_fewer_entries_says_how_many_and_which(tmp_path):
    ds = FERDataset([Sample(f"/d/test_{i:04d}_aligned.jpg", i % 3) for i in range(1, 6)], ["a", "b", "c"])
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"\xef\xbb\xbf1/test_0001_aligned.jpg\r\n0/test_0099_aligned.jpg\r\n2/test_0002_aligned.jpg\r\n"
                    b"1/../../etc/passwd\r\n")
    with pytest.raises(DataError, match=r"list.txt:2: entry 'test_0099_aligned.jpg' not found"):
        restrict_to_list(ds, lst)
    with pytest.warns(UserWarning, match=r"skipped 2 entries whose image is not in dataset \(4 entries, 2 matched\): "
                                         r".*list.txt:2: entry 'test_0099_aligned.jpg'.*list.txt:4: entry "
                                         r"'../../etc/passwd'"):
        out = restrict_to_list(ds, lst, skip_bad=True)
    assert [Path(s.path).name for s in out.samples] == ["test_0001_aligned.jpg", "test_0002_aligned.jpg"]
