"""Shared fixtures: tiny generated datasets so tests run in seconds on 2 CPU cores."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)


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


@pytest.fixture
def tiny_folder(tmp_path):
    return make_imagefolder(tmp_path / "data")
