"""Hostile images: a corpus made here (no binary fixtures) through the one image entry point
(:func:`lanfer.data.load_image`), training (with and without ``data.skip_bad``) and ``lanfer predict``.

References: numpy's own rotation for the EXIF case, the pixel values written for 16-bit, grey, palette and
animated files, ``resource.getrusage`` in a fresh process for the decompression bomb's memory.
"""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_imagefolder
from PIL import Image, features

import lanfer
from lanfer.checkpoint import save_model
from lanfer.cli import main
from lanfer.config import config_from_dict
from lanfer.data import DataError, load_image
from lanfer.train import train

RGB = np.random.default_rng(0).integers(0, 256, (24, 40, 3)).astype(np.uint8)
# smooth and asymmetric, so JPEG keeps it and any wrong rotation shows
UPRIGHT = np.zeros((24, 40, 3), np.uint8)
UPRIGHT[:8, :10] = (250, 250, 250)
UPRIGHT[16:, 30:, 0] = 120


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring ``width x height`` RGB, with a tiny IDAT: a few hundred bytes
    that would decode to width*height*3 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    image.save(b, fmt, **kw)
    return b.getvalue()


def make_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus; returns file name -> expected outcome ("ok" or "bad")."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = _encode(Image.fromarray(RGB), "JPEG", quality=95)
    png = bytearray(_encode(Image.fromarray(RGB), "PNG"))
    png[30] ^= 0xFF  # inside IHDR's data: its CRC no longer matches
    files: dict[str, tuple[bytes, str]] = {
        "zero_bytes.jpg": (b"", "bad"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "bad"),
        "bad_crc.png": (bytes(png), "bad"),
        "text.jpg": (b"this is not an image\n" * 5, "bad"),
        "page.png": (b"<!doctype html><html><body><img src=x></body></html>", "bad"),
        "bomb_100000x100000.png": (_png_header_only(100_000, 100_000), "bad"),
        "over_limit_10000x10000.png": (_png_header_only(10_000, 10_000), "bad"),  # Pillow alone only warns here
        "one_pixel.png": (_encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "ok"),
        "sixteen_bit.png": (_encode(Image.fromarray((np.arange(24 * 40).reshape(24, 40) * 68).astype(np.uint16)),
                                    "PNG"), "ok"),
        "cmyk.jpg": (_encode(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=95), "ok"),
        "palette_transparent.png": (_encode(Image.fromarray(RGB).convert("P"), "PNG", transparency=0), "ok"),
        "alpha.png": (_encode(Image.fromarray(np.dstack([RGB, np.full(RGB.shape[:2], 128, np.uint8)])), "PNG"), "ok"),
        "grey.png": (_encode(Image.fromarray(RGB[..., 0]), "PNG"), "ok"),
        "tiff.tif": (_encode(Image.fromarray(RGB), "TIFF"), "ok"),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned, display rotated 90 degrees clockwise
    files["exif_rotated.jpg"] = (_encode(Image.fromarray(UPRIGHT), "JPEG", quality=100, subsampling=0,
                                         exif=exif.tobytes()), "ok")
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    b = io.BytesIO()
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["animated.gif"] = (b.getvalue(), "ok")
    if features.check("webp"):
        files["webp.webp"] = (_encode(Image.fromarray(RGB), "WEBP", lossless=True), "ok")
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    os.symlink("loop.jpg", folder / "loop.jpg")  # a link to itself: ELOOP
    os.symlink("missing.png", folder / "dangling.png")
    expected = {name: outcome for name, (_, outcome) in files.items()}
    expected.update({"loop.jpg": "bad", "dangling.png": "bad"})
    return expected


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    return folder, make_corpus(folder)


def test_every_corpus_file_decodes_or_is_refused_naming_it(corpus):
    folder, expected = corpus
    assert sum(v == "bad" for v in expected.values()) == 9 and len(expected) >= 17
    for name, outcome in expected.items():
        path = folder / name
        if outcome == "bad":
            with pytest.raises(DataError) as e:
                load_image(path)
            assert str(path) in str(e.value), name
        else:
            im = load_image(path)
            assert im.mode == "RGB" and min(im.size) >= 1, name


def test_decoded_pixels_match_what_was_written(corpus):
    folder, _ = corpus
    # EXIF orientation 6: shown rotated 90 degrees clockwise, i.e. numpy's rot90 with k=-1
    got = np.asarray(load_image(folder / "exif_rotated.jpg")).astype(int)
    assert got.shape == (40, 24, 3)
    assert np.abs(got - np.rot90(UPRIGHT, k=-1).astype(int)).mean() < 2  # JPEG at quality 100
    assert np.abs(got - np.rot90(UPRIGHT, k=1).astype(int)).mean() > 20  # and not the other way round
    # 16-bit grey: scaled by 257, not clipped at 255 (clipping would make most of it white)
    sixteen = (np.arange(24 * 40).reshape(24, 40) * 68).astype(np.uint16)
    got = np.asarray(load_image(folder / "sixteen_bit.png"))
    assert np.array_equal(got[..., 0], np.rint(sixteen / 257).astype(np.uint8))
    assert np.array_equal(got[..., 0], got[..., 2])
    # animated GIF: the first frame (red), not the second (blue)
    assert tuple(np.asarray(load_image(folder / "animated.gif"))[8, 8]) == (255, 0, 0)
    assert np.array_equal(np.asarray(load_image(folder / "grey.png"))[..., 1], RGB[..., 0])
    assert np.array_equal(np.asarray(load_image(folder / "alpha.png")), RGB)  # alpha dropped, colour kept
    assert np.array_equal(np.asarray(load_image(folder / "tiff.tif")), RGB)
    assert np.abs(np.asarray(load_image(folder / "cmyk.jpg")).astype(int) - RGB).mean() < 6


def test_decompression_bomb_is_refused_fast_with_bounded_memory(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    probe = (
        "import resource, sys, time\n"
        "from lanfer.data import load_image, DataError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = time.perf_counter()\n"
        "for _ in range(20):\n"
        "    try:\n"
        f"        load_image({str(path)!r}); print('LOADED'); sys.exit(1)\n"
        "    except DataError as e:\n"
        "        message = str(e)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
        "print(message)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(lanfer.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    seconds, grown_kib = (float(x) for x in out.stdout.splitlines()[0].split())
    assert "more pixels than the limit" in out.stdout and "bomb.png" in out.stdout
    assert seconds < 2.0  # 20 refusals; decoding would take minutes
    assert grown_kib < 20 * 1024  # the image would need 30 GB
    # the limit is configurable: a 64 x 64 limit refuses the one-pixel corpus neighbour's big brother
    small = tmp_path / "s.png"
    Image.new("RGB", (100, 100)).save(small)
    probe2 = f"from lanfer.data import load_image\nload_image({str(small)!r})\n"
    out = subprocess.run([sys.executable, "-c", probe2], capture_output=True, text=True,
                         env={**env, "LANFER_MAX_IMAGE_PIXELS": "4096"}, timeout=120)
    assert out.returncode != 0 and "declares 100 x 100 pixels" in out.stderr


def _train_cfg(root, **over):
    d = {"model": {"name": "resnet18"},
         "data": {"name": "imagefolder", "root": str(root), "image_size": 32, "num_workers": 0, "augment": False,
                  "val_split": None, "test_split": "test"},
         "train": {"epochs": 1, "batch_size": 8, "lr": 0.01, "warmup_epochs": 0, "progress": False,
                   "channels_last": False},
         "seed": 0}
    for k, v in over.items():
        sec, key = k.split(".")
        d[sec][key] = v
    return config_from_dict(d)


def test_training_names_each_bad_image_or_stops_at_the_first(tmp_path, capsys):
    root = make_imagefolder(tmp_path / "data", classes=("a", "b"), per_class=4, size=32)
    expected = make_corpus(root / "train" / "a")
    bad = sorted(n for n, o in expected.items() if o == "bad")
    with pytest.raises(DataError, match=r"image file '.*/train/a/(" + "|".join(bad).replace(".", r"\.") + ")'"):
        train(_train_cfg(root), out=tmp_path / "strict")
    n = 2 * 4 + len(expected)  # one batch holding every training image, so each is read
    with pytest.warns(UserWarning, match="skipping bad image"):
        train(_train_cfg(root, **{"data.skip_bad": True, "train.batch_size": n}), out=tmp_path / "skip")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"warning: {len(bad)} images could not be decoded"), last
    named = [n for n in bad if n in last]
    assert len(named) == 5 and f"and {len(bad) - 5} more" in last  # train.py names five, counts the rest


def _model_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    m = lanfer.create_model("resnet18", num_classes=2)
    return save_model(tmp_path / "m.safetensors", m, {"model": {"name": "resnet18", "num_classes": 2},
                                                      "classes": ["x", "y"], "image_size": 32})


def _tree(folder: Path, skip: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*") if skip not in p.parents and p != skip}


def test_predict_reports_a_row_per_file_carries_on_and_sets_the_exit_code(corpus, tmp_path, capsys):
    folder, expected = corpus
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "up")  # a folder loop: the walk must still end
    model = _model_file(tmp_path)
    out = tmp_path / "pred"
    before = _tree(tmp_path, out)
    code = main(["predict", str(model), str(folder), "--no-detect", "--out", str(out), "--no-progress"])
    assert code == 1  # something failed
    assert _tree(tmp_path, out) == before  # nothing written outside --out
    table = pd.read_csv(out / "predictions.csv")
    rows = {Path(s).name: st for s, st in zip(table["source"], table["status"])}
    assert set(rows) == set(expected), set(rows) ^ set(expected)
    for name, outcome in expected.items():
        if outcome == "ok":
            assert rows[name] == "ok", (name, rows[name])
        else:
            assert rows[name].startswith("error: ") and name in rows[name], (name, rows[name])
    assert "Too many levels of symbolic links" in rows["loop.jpg"]
    assert "more pixels than the limit" in rows["bomb_100000x100000.png"]
    capsys.readouterr()
    good = [str(folder / n) for n, o in expected.items() if o == "ok"]
    assert main(["predict", str(model), *good, "--no-detect", "--out", str(tmp_path / "p2"), "--no-progress"]) == 0


def test_exif_rotated_photo_gives_an_upright_face_to_the_detector(tmp_path):
    """A phone photo stored sideways with an EXIF orientation: MTCNN finds the face upright (eyes above the
    mouth, the eye line level), which it would not on the stored pixels."""
    pytest.importorskip("facenet_pytorch")
    synth = pytest.importorskip("lanfer.data.synth")
    from lanfer.faces import get_detector

    face, _ = synth.render_face(synth.FaceParams(identity=synth.sample_identity(0, 1)), yaw=0.0, size=160)
    canvas = np.full((200, 200, 3), 140, np.uint8)
    canvas[20:180, 20:180] = np.asarray(face)
    stored = np.rot90(canvas, k=1)  # the sensor's pixels: the face lies on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", which undoes k=1
    Image.fromarray(stored).save(tmp_path / "phone.jpg", quality=95, exif=exif.tobytes())
    det = get_detector("mtcnn", device="cpu")
    upright = det.detect([np.asarray(load_image(tmp_path / "phone.jpg"))])[0]
    assert len(upright) >= 1
    lm = upright[0].landmarks  # left eye, right eye, nose, mouth left, mouth right
    assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()  # eyes above nose above mouth
    assert abs(lm[0, 1] - lm[1, 1]) < 0.2 * abs(lm[1, 0] - lm[0, 0])  # a level eye line
    sideways = det.detect([np.ascontiguousarray(stored)])[0]
    assert not sideways or abs(sideways[0].landmarks[0, 1] - sideways[0].landmarks[1, 1]) > abs(
        lm[0, 1] - lm[1, 1])  # on the stored pixels the face is not upright
