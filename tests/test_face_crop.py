"""A model's FaceCrop decides how prediction cuts a face: checked against hand computations."""
from __future__ import annotations

import numpy as np
import pytest

from lanfer.faces import crop_face
from lanfer.faces.align import ARCFACE_SIZE, ARCFACE_TEMPLATE, alignment_matrix, crop_template, transform_points
from lanfer.info import FaceCrop


def test_box_crop_is_the_squared_grown_box():
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:40, 50:90] = 255  # a 40 x 20 white box
    crop = crop_face(img, None, (50, 20, 90, 40), size=80, crop=FaceCrop(kind="box", margin=0.0))
    # squared about its centre (70, 30): side 40, rows 10..50 of which 20..40 are white -> crop rows 20..60
    white = crop[..., 0] > 127
    assert white[:, 40].nonzero()[0].min() in (19, 20) and white[:, 40].nonzero()[0].max() in (59, 60)
    assert white[40].all()  # the full width of the box
    grown = crop_face(img, None, (50, 20, 90, 40), size=80, crop=FaceCrop(kind="box", margin=0.5))
    assert (grown[..., 0] > 127)[40].sum() in range(38, 43)  # half the side: 80 / 2


@pytest.mark.parametrize("margin,shift", [(0.1, 0.0), (-0.085, -0.068), (0.3, 0.1)])
def test_template_crop_puts_the_landmarks_where_margin_and_shift_say(margin, shift):
    rng = np.random.default_rng(0)
    landmarks = ARCFACE_TEMPLATE * 1.7 + np.array([30.0, 12.0]) + rng.normal(0, 0.5, (5, 2))
    size = 112
    m = alignment_matrix(landmarks, size, margin, crop_template(margin, shift))
    got = transform_points(landmarks, m) / size  # landmark fractions in the crop
    want = 0.5 + (ARCFACE_TEMPLATE / ARCFACE_SIZE - 0.5) / (1 + 2 * margin) + np.array([0.0, shift])
    assert np.abs(got - want).max() < 0.01
    img = rng.integers(0, 255, (200, 220, 3), dtype=np.uint8)
    out = crop_face(img, landmarks, (0, 0, 1, 1), size, FaceCrop(margin=margin, shift_y=shift))
    assert out.shape == (size, size, 3) and out.dtype == np.uint8


def test_unknown_crop_kind_is_refused():
    from lanfer.info import InfoError

    with pytest.raises(InfoError, match="kind 'oval'"):
        FaceCrop(kind="oval")
