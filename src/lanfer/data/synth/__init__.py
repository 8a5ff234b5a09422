"""``lanfer synth``: a procedural multi-view facial-expression renderer (numpy + PIL, no assets).

Faces are built in 3D (:mod:`.face`): a head with jaw, cheekbones and forehead shaped per person, eyeballs
with iris and pupil behind lids cut to the current aperture, brows, nose, lips with teeth and a mouth
cavity behind them, ears, neck, optional hair and glasses. Expressions are FACS action units with
intensities (:mod:`.expressions`) that move the skin; identities (:mod:`.identity`) fix geometry and
colours per person. :mod:`.render` poses the face (yaw, pitch, roll), shades it by normal . light and
draws it with a z-buffer, so self-occlusion is right at every pose; :mod:`.generate` writes datasets.

Conventions (also written into every ``synth.json``):

* yaw > 0: the head turns to the *subject's left*, the nose moves to the image right; KDEF's ``FR``
  (full right profile, +90) shows the subject's right cheek. pitch > 0 looks up; roll > 0 is clockwise.
* landmarks ``left_eye``, ``right_eye``, ``nose``, ``mouth_left``, ``mouth_right``: "left" is the
  *image-left* side of a frontal face (the subject's right), as in MTCNN; each has a visibility flag.
* pictures are square face crops, as if already detected and aligned (KDEF's are 562x762 portraits).

Python::

    from lanfer.data.synth import generate, render_face, FaceParams, sample_identity, prototype
    root = generate("data/synth", identities=4, seed=1)            # KDEF layout, 280 pictures
    img, landmarks = render_face(FaceParams(sample_identity(1, 0), prototype("happy")), yaw=45)
"""
from .expressions import (AU_NAMES, AUS, EXPRESSIONS, PROTOTYPES, expression_names, facs_code, prototype,
                          sample_expression)
from .face import LANDMARKS, FaceModel, build_face
from .generate import KDEF_VIEWS, generate, metadata_columns, plan
from .identity import Identity, sample_identity
from .render import FaceParams, Scene, render, render_face, rotation_matrix, sample_scene

__all__ = ["AU_NAMES", "AUS", "EXPRESSIONS", "PROTOTYPES", "expression_names", "facs_code", "prototype",
           "sample_expression", "LANDMARKS", "FaceModel", "build_face", "KDEF_VIEWS", "generate",
           "metadata_columns", "plan", "Identity", "sample_identity", "FaceParams", "Scene", "render",
           "render_face", "rotation_matrix", "sample_scene"]
