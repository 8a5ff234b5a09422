"""Shared fixtures: tiny generated datasets so tests run in seconds on 2 CPU cores."""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Two threads (CI machines have two cores) unless OMP_NUM_THREADS says otherwise: `make test-numerics` runs the
# numerics-heavy tests at 1 and at 2 threads, since a sum split over threads can come out in another order.
_threads = os.environ.get("OMP_NUM_THREADS", "")
torch.set_num_threads(int(_threads) if _threads.isdigit() and int(_threads) > 0 else 2)


def make_imagefolder(root, classes=("happy", "sad", "neutral"), per_class=8, splits=("train", "test"), size=40,
                     seed=0):
    """Write root/<split>/<class>/*.png where each class has a distinct, learnable pattern plus noise."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                # class k: a bright bar at a class-specific height
                y0 = int((k + 0.5) * size / (len(classes) + 0.5))
                img[y0:y0 + size // 6, :, k % 3] = 230
                Image.fromarray(img).save(d / f"{c}_{i:03d}.png")
    return root


def release_if_passed(request, path: Path, failed_before: int) -> None:
    """End of a module-scoped fixture: remove its folder when no test failed meanwhile. pytest removes a passing
    test's ``tmp_path`` at once (tmp_path_retention_policy) but keeps ``tmp_path_factory`` folders to the end
    of the session, and these hold trained models: three of them were a third of the suite's peak disk use."""
    if request.session.testsfailed == failed_before:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tiny_folder(tmp_path):
    return make_imagefolder(tmp_path / "data")


def write_rafdb_noise(tmp_path, n_train=6, n_test=4, size=100):
    """RAF-DB basic in its official layout (EmoLabel/list_patition_label.txt + Image/aligned/), with
    random-noise aligned faces of ``size`` px and labels cycling through 1..7."""
    base = tmp_path / "basic"
    (base / "EmoLabel").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    names = [f"train_{i:05d}.jpg" for i in range(1, n_train + 1)] + [f"test_{i:04d}.jpg" for i in range(1, n_test + 1)]
    for k, name in enumerate(names):
        lines.append(f"{name} {k % 7 + 1}")
        path = base / "Image" / "aligned" / f"{name[:-4]}_aligned.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    (base / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return base

# ---------------------------------------------------------------------------------------------------------
# Real photos: the face-api demo pictures (six group photos, 22 faces), fetched with npm when available

FACE_API = "@vladmandic/face-api@1.7.15"
# faces a person counts in each picture; sample4's dress pattern also gets a low-score false detection
FACE_API_FACES = {"sample1.jpg": 3, "sample2.jpg": 3, "sample3.jpg": 3, "sample4.jpg": 4, "sample5.jpg": 5,
                  "sample6.jpg": 4}


def face_api_cache_dir() -> Path:
    base = os.environ.get("LANFER_CACHE") or Path.home() / ".cache" / "lanfer"
    return Path(base) / "face-api"


@pytest.fixture(scope="session")
def face_api_photos() -> dict[str, np.ndarray]:
    """The six demo photos, fetched once with `npm pack` into ~/.cache/lanfer/face-api (or $LANFER_CACHE)."""
    cache = face_api_cache_dir()
    if not all((cache / n).is_file() for n in FACE_API_FACES):
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot fetch the face-api demo photos")
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                subprocess.run([npm, "pack", FACE_API, "--pack-destination", tmp, "--silent"], check=True,
                               capture_output=True, timeout=180)
            except (subprocess.SubprocessError, OSError) as e:
                pytest.skip(f"npm pack {FACE_API} failed (offline?): {e}")
            tgz = next(Path(tmp).glob("*.tgz"))
            with tarfile.open(tgz) as tar:
                for member in tar.getmembers():
                    name = Path(member.name).name
                    if member.isfile() and member.name == f"package/demo/{name}" and name in FACE_API_FACES:
                        (cache / name).write_bytes(tar.extractfile(member).read())
    return {n: np.asarray(Image.open(cache / n).convert("RGB")) for n in FACE_API_FACES}


@pytest.fixture(scope="session")
def face_api_counts() -> dict[str, int]:
    """Faces a person counts in each demo photo."""
    return dict(FACE_API_FACES)


@pytest.fixture(scope="session")
def face_api_paths(face_api_photos) -> list[Path]:
    """The cached photo files (after face_api_photos has fetched them)."""
    return [face_api_cache_dir() / n for n in face_api_photos]
