"""Property-based fuzzing (hypothesis) of what lanfer reads from strangers: the label-file readers (RAF-DB,
FERPlus's two vote files, AffectNet, the generic CSV), pose lists, YAML configs with ``--set`` overrides, and
the image entry point. The property everywhere: the reader returns a valid result or raises its own error
type (DataError / ConfigError) with the file named; never another exception, never a path outside the
dataset folder. Bounded for CI (``max_examples``, about a minute in all on one core); the executions run are
printed at the end of the module (``pytest -s``). Inputs they found became the regression tests at the end.
"""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from lanfer.config import ConfigError, load_config
from lanfer.data import DataError, build_dataset, load_image
from lanfer.data.poselists import read_pose_list, restrict_to_list

RUNS: dict[str, int] = {}
FUZZ = settings(max_examples=int(os.environ.get("LANFER_FUZZ_EXAMPLES", 120)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def report_executions():
    yield
    total = sum(RUNS.values())
    sys.__stdout__.write(f"\nfuzz executions: {total} ({', '.join(f'{k} {v}' for k, v in RUNS.items())})\n")


def _count(name: str) -> None:
    RUNS[name] = RUNS.get(name, 0) + 1


# Lines: well-formed ones mixed with near misses and garbage, joined by any newline, with an optional BOM and
# optional bytes that are not UTF-8.
_tricky = st.sampled_from(["", " ", ",", "\t", "\x00", "\ufeff", "nan", "inf", "-1", "1e999", "../../etc/passwd",
                           "/etc/passwd", "²", "٣", '"', '"a,b"', "\u2028", "train_", "test_", "0", "7", "8", "10"])
_junk = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
_newline = st.sampled_from(["\n", "\r\n", "\r"])


def _file(lines) -> st.SearchStrategy[bytes]:
    return st.builds(lambda ls, nl, bom, tail: (("\ufeff" if bom else "") + nl.join(ls)).encode() + tail,
                     st.lists(lines, max_size=12), _newline, st.booleans(),
                     st.sampled_from([b"", b"", b"\xff\xfe", b"\n\x80abc"]))


def _parts(*cells) -> st.SearchStrategy[str]:
    return st.tuples(*cells).map(lambda t: "".join(t))


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    rafdb = base / "rafdb"
    (rafdb / "EmoLabel").mkdir(parents=True)
    (rafdb / "Image" / "aligned").mkdir(parents=True)
    ferplus = base / "ferplus"
    (ferplus / "FER2013Test").mkdir(parents=True)
    affectnet = base / "affectnet"
    (affectnet / "Manually_Annotated_Images").mkdir(parents=True)
    generic = base / "generic"
    generic.mkdir()
    return {"rafdb": rafdb, "ferplus": ferplus, "affectnet": affectnet, "generic": generic, "base": base}


def _check(ds, folder: Path) -> None:
    """A built dataset: labels in range, every path inside ``folder``."""
    real = os.path.realpath(folder)
    for s in ds.samples:
        assert os.path.realpath(s.path).startswith(real + os.sep), s.path
        if isinstance(s.label, int):
            assert 0 <= s.label < len(ds.classes)
        else:
            assert len(s.label) == len(ds.classes) and np.isfinite(s.label).all()


def _build(name, root, split, folder, **options):
    for skip_bad in (False, True):
        try:
            ds = build_dataset(name, root, split, skip_bad=skip_bad, check_files=False, **options)
        except DataError as e:
            assert str(e), "empty message"
            continue
        _check(ds, folder)


_raf_line = _parts(st.sampled_from(["train_", "test_", "x_", ""]),
                   st.one_of(st.from_regex(r"[0-9]{5}", fullmatch=True), _tricky),
                   st.sampled_from([".jpg", ""]), st.sampled_from([" ", "  ", "\t", ""]),
                   st.one_of(st.integers(-2, 9).map(str), _tricky))


@FUZZ
@given(_file(st.one_of(_raf_line, _junk)))
@example("train_00001.jpg 1\r\ntrain_00001.jpg 2\r\n".encode())
def test_fuzz_rafdb_labels(roots, data):
    _count("rafdb")
    (roots["rafdb"] / "EmoLabel" / "list_patition_label.txt").write_bytes(data)
    with _quiet():
        _build("rafdb", roots["rafdb"], "train", roots["rafdb"] / "Image" / "aligned")


_votes = st.lists(st.one_of(st.integers(0, 10).map(str), _tricky), min_size=8, max_size=12).map(",".join)
_fer_name = st.one_of(st.from_regex(r"fer[0-9]{7}\.png", fullmatch=True), _tricky)
_fer_line = _parts(st.sampled_from(["PrivateTest,", "Training,", "Foo,", ""]), _fer_name, st.just(","), _votes)
FER_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


@FUZZ
@given(_file(st.one_of(_fer_line, _junk)), st.booleans())
def test_fuzz_ferplus_vote_files(roots, data, header):
    _count("ferplus")
    folder = roots["ferplus"] / "FER2013Test"
    (roots["ferplus"] / "fer2013new.csv").write_bytes((FER_HEADER + "\n").encode() * header + data)
    (folder / "label.csv").write_bytes(data.replace(b"PrivateTest,", b""))
    with _quiet():
        for source in ("folders", "labelcsv"):
            _build("ferplus", roots["ferplus"], "test", folder, source=source,
                   votes="fer2013new" if source == "folders" else "label_csv")


_aff_line = _parts(st.one_of(st.from_regex(r"[0-9]{1,3}/[a-f0-9]{8}\.jpg", fullmatch=True), _tricky),
                   st.lists(st.one_of(st.integers(-5, 300).map(str), _tricky), min_size=4, max_size=4).map(
                       lambda c: "," + ",".join(c)), st.just(",1;2;3,"),
                   st.one_of(st.integers(-1, 11).map(str), _tricky),
                   st.just(",0.1,-0.2"))


@FUZZ
@given(_file(st.one_of(_aff_line, _junk)), st.sampled_from(["none", "bbox"]))
def test_fuzz_affectnet_csv(roots, data, crop):
    _count("affectnet")
    (roots["affectnet"] / "validation.csv").write_bytes(data)
    with _quiet():
        _build("affectnet", roots["affectnet"], "val", roots["affectnet"] / "Manually_Annotated_Images", crop=crop)


_csv_line = _parts(st.one_of(st.from_regex(r"[a-z]{1,4}\.png", fullmatch=True), _tricky), st.just(","),
                   st.one_of(st.sampled_from(["happy", "sad", "0", "1"]), _tricky),
                   st.sampled_from(["", ",test", ",train", ",test,extra"]))


@FUZZ
@given(_file(st.one_of(_csv_line, _junk)), st.sampled_from(["path,label", "path,label,split", "label,path", "path"]))
def test_fuzz_generic_csv(roots, data, header):
    _count("csv")
    (roots["generic"] / "labels.csv").write_bytes(header.encode() + b"\n" + data)
    for skip_bad in (False, True):
        try:
            with _quiet():
                ds = build_dataset("csv", roots["generic"], "test", skip_bad=skip_bad)
        except DataError:
            continue
        _check(ds, roots["generic"])


_pose_line = _parts(st.one_of(st.integers(-1, 9).map(str), _tricky), st.sampled_from(["/", "", "//"]),
                    st.one_of(st.sampled_from(["test_0001_aligned.jpg", "test_0002.jpg", "x.jpg"]), _tricky))


@FUZZ
@given(_file(st.one_of(_pose_line, _junk)))
def test_fuzz_pose_lists(roots, data):
    _count("pose list")
    from lanfer.data.base import FERDataset, Sample

    path = roots["base"] / "list.txt"
    path.write_bytes(data)
    try:
        entries = read_pose_list(path)
    except DataError:
        return
    assert all(0 <= label for _, label, _ in entries)
    ds = FERDataset([Sample(f"/d/test_{i:04d}_aligned.jpg", i % 3) for i in range(1, 4)], ["a", "b", "c"])
    try:
        with _quiet():
            out = restrict_to_list(ds, path, skip_bad=True)
    except DataError:
        return
    assert out.subset_info["matched"] + out.subset_info["missing"] + out.subset_info["duplicates"] <= len(entries)


_yaml_value = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                        st.text(max_size=8), st.sampled_from([".nan", ".inf", "[1, 2]", "{a: 1}",
                                                              "!!python/name:os.system",
                                                              "*x", "&x 1", "'", "[", "{"]))
_keys = st.sampled_from(["model", "data", "train", "loss", "guidance", "seed", "out", "model.name", "train.lr",
                         "train.epochs", "data.image_size", "data.classes", "data.options", "data.crop", "trian",
                         "train.lrr", "model.head_widths", "", ".", "train.", "data.crop.margin"])


@FUZZ
@given(st.lists(st.tuples(_keys, _yaml_value), max_size=6), st.lists(st.tuples(_keys, _yaml_value), max_size=3),
       st.binary(max_size=20))
@example([], [], b"\x00" * 11 + b"\x80")  # found by this fuzz: a UnicodeDecodeError escaped load_config
def test_fuzz_config_yaml_and_overrides(roots, items, overrides, noise):
    _count("config")
    text = "".join(f"{k}: {v}\n" for k, v in items)
    path = roots["base"] / "c.yaml"
    path.write_bytes(text.encode() + (noise if len(noise) % 3 == 0 else b""))
    try:
        cfg = load_config(path, [f"{k}={v}" for k, v in overrides])
    except ConfigError as e:
        assert "Traceback" not in str(e)
        return
    assert cfg.data.image_size >= 32 and cfg.train.lr > 0


def _valid_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (9, 7, 3)).astype(np.uint8))
    out = []
    for fmt, kw in [("PNG", {}), ("JPEG", {}), ("GIF", {}), ("TIFF", {}), ("BMP", {}), ("WEBP", {"lossless": True})]:
        b = io.BytesIO()
        try:
            img.save(b, fmt, **kw)
        except (KeyError, OSError):  # a Pillow built without this codec
            continue
        out.append(b.getvalue())
    return out


VALID = _valid_images()


@st.composite
def _mutated_image(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "big"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[i:i + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "big" and len(data) > i + 4:  # a width/height field set to a huge value
            data[i:i + 4] = b"\x7f\xff\xff\xff"
    return bytes(data)


@FUZZ
@given(st.one_of(_mutated_image(), st.binary(max_size=256)))
def test_fuzz_image_entry_point(roots, data):
    _count("image")
    path = roots["base"] / "fuzz.img"
    path.write_bytes(data)
    try:
        with _quiet():
            im = load_image(path)
    except DataError as e:
        assert str(path) in str(e)
        return
    assert im.mode == "RGB" and im.width * im.height >= 1


class _quiet:
    """Readers warn about what they skip (that is their job); the fuzz asserts on results, not warnings."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
