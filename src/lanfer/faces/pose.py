"""Head pose (yaw, pitch, roll) from five facial landmarks.

Conventions (degrees; camera axes: x to image-right, y down, z away from the camera):

* **yaw** -- rotation about the face's vertical axis. **Positive yaw: the face turns toward image-right**
  (its nose points to the right side of the picture, i.e. the subject turns to their own left).
* **pitch** -- rotation about the horizontal axis. **Positive pitch: the face looks up** (nose moves up).
* **roll** -- in-plane rotation. **Positive roll: clockwise on screen** (the image-right eye is lower);
  for a frontal face it equals the angle of the eye line, ``atan2(dy, dx)`` with y down.

The head's rotation is ``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)`` (see :func:`rotation_matrix`): yaw is taken
about the head's own vertical axis, then the head is pitched and rolled. This matches the metadata of
lanfer's synthetic renderer, whose landmarks may be produced with :func:`project_landmarks`.

Method: a scaled-orthographic ("weak perspective") least-squares fit of a generic 3D five-point face
(:data:`FACE_MODEL_3D`) to the landmarks, solved by Levenberg-Marquardt from a grid of starting poses
(the scale is solved in closed form at every step). Why not ``cv2.solvePnP``: PnP needs the camera's
focal length and principal point, which are unknown for the cropped, rescaled images of FER datasets and
phone photos; weak perspective needs none, and it measures the pose relative to the line of sight, which
is what shapes the face's appearance. On synthetic faces (perspective projection, IOD ~30% of a 224 px
image, per-face 3D model perturbed by +-15% per axis plus 3 mm noise, 3% IOD landmark noise) the median
absolute yaw error was 3-4 degrees at 0, 45 and 75 degrees of yaw for both this fit and solvePnP given the
true principal point; without noise and model error the fit is exact under orthographic projection.

Accuracy is bounded by how far a person's face departs from the generic model and by landmark noise
(a 3% IOD error on the nose moves yaw by ~3 degrees near frontal); beyond ~70 degrees of yaw the far eye
is hidden and a 2D detector's landmarks for it are guesses.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._checks import as_points

#: Generic 3D positions (mm) of the five landmarks: left eye, right eye, nose tip, left and right mouth
#: corners, for a frontal face in camera axes (x right, y down, z away from the camera; eyes at z = 0).
#: x and y are the ArcFace 2D template scaled to a 63 mm inter-ocular distance (so a frontal face's
#: landmarks equal the template up to scale); depths follow the Multi-PIE 68-point mean face: the nose tip
#: ~33 mm in front of the eye centres, the mouth corners ~2 mm behind them.
FACE_MODEL_3D = np.array([
    [-31.5, 0.0, 0.0],
    [31.5, 0.0, 0.0],
    [0.0, 36.0, -33.0],
    [-26.1, 72.7, 2.0],
    [26.1, 72.7, 2.0],
], dtype=np.float64)


class HeadPose(NamedTuple):
    """Head pose in degrees (conventions in the module docstring)."""

    yaw: float
    pitch: float
    roll: float


def _rotations(angles: np.ndarray) -> np.ndarray:
    """``(..., 3)`` degrees (yaw, pitch, roll) -> ``(..., 3, 3)`` rotation matrices Rz @ Rx @ Ry."""
    y, p, r = np.moveaxis(np.radians(angles), -1, 0)
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    # Signs chosen so that positive yaw moves the nose (z < 0) to +x, positive pitch moves it to -y (up)
    # and positive roll turns +x toward +y (clockwise on screen with y down), with
    #   Ry = [[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]], Rx = [[1, 0, 0], [0, cp, sp], [0, -sp, cp]],
    #   Rz = [[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]].
    # The product is written out rather than multiplied: the pose fit evaluates it for every candidate at
    # every step, and for 3x3 matrices numpy's per-call overhead, not arithmetic, is the cost (issue 20).
    sp_sy, sp_cy = sp * sy, sp * cy
    return np.stack([cr * cy - sr * sp_sy, -sr * cp, -cr * sy - sr * sp_cy,
                     sr * cy + cr * sp_sy, cr * cp, cr * sp_cy - sr * sy,
                     cp * sy, -sp, cp * cy], -1).reshape(*np.shape(y), 3, 3)


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``(3, 3)`` rotation taking face-model coordinates to camera coordinates (degrees in)."""
    return _rotations(np.array([yaw, pitch, roll], dtype=np.float64))


def euler_angles(rotation: Any) -> HeadPose:
    """Inverse of :func:`rotation_matrix`: yaw and roll in (-180, 180], pitch in [-90, 90]."""
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3):
        raise ValueError(f"rotation must be a (3, 3) matrix, got shape {r.shape}")
    # Third row of Rz Rx Ry is (cp*sy, -sp, cp*cy); first two entries of column 1 are (-sr*cp, cr*cp).
    pitch = np.degrees(np.arcsin(np.clip(-r[2, 1], -1.0, 1.0)))
    yaw = np.degrees(np.arctan2(r[2, 0], r[2, 2]))
    roll = np.degrees(np.arctan2(-r[0, 1], r[1, 1]))
    return HeadPose(float(yaw), float(pitch), float(roll))


def project_landmarks(yaw: float, pitch: float, roll: float, scale: float = 1.0, center: Any = (0.0, 0.0),
                      model: Any = None) -> np.ndarray:
    """Orthographically project the 3D five-point model posed at (yaw, pitch, roll) degrees.

    Args:
        scale: pixels per model unit (mm for :data:`FACE_MODEL_3D`).
        center: where the model's centroid lands, in pixels.
        model: ``(5, 3)`` points (default :data:`FACE_MODEL_3D`).
    Returns:
        ``(5, 2)`` pixel coordinates in the detector landmark order.
    """
    m = _model(model)
    cam = (m - m.mean(0)) @ rotation_matrix(yaw, pitch, roll).T  # (5, 3)
    return scale * cam[:, :2] + np.asarray(center, dtype=np.float64)


def _model(model: Any) -> np.ndarray:
    if model is None:
        return FACE_MODEL_3D
    m = np.asarray(model, dtype=np.float64)
    if m.shape != (5, 3) or not np.isfinite(m).all():
        raise ValueError(f"a 3D face model must be a finite (5, 3) array, got shape {m.shape}")
    return m


# Starting poses for the fit: a coarse grid over yaw and pitch (roll starts from the eye line); the fit's
# cost has a mirror-like local minimum at the opposite yaw/pitch sign, which some start always avoids.
_START_YAWS = (-70.0, -35.0, 0.0, 35.0, 70.0)
_START_PITCHES = (-30.0, 0.0, 30.0)


def _residuals(angles: np.ndarray, model_c: np.ndarray, pts_c: np.ndarray) -> np.ndarray:
    """Scaled-orthographic residuals ``(S, 10)`` for ``S`` candidate poses, scale solved in closed form."""
    proj = (model_c @ np.swapaxes(_rotations(angles), -1, -2))[..., :2]  # (S, 5, 2)
    scale = (proj * pts_c).sum((-1, -2)) / np.maximum((proj ** 2).sum((-1, -2)), 1e-12)  # (S,)
    return (scale[:, None, None] * proj - pts_c).reshape(len(angles), -1)


def estimate_pose(landmarks: Any, model: Any = None, iterations: int = 50) -> HeadPose:
    """Estimate head pose from five landmarks (conventions and method in the module docstring).

    Args:
        landmarks: ``(5, 2)`` pixel coordinates: left eye, right eye, nose, left mouth corner, right mouth
            corner ("left" = image-left), e.g. ``Face.landmarks``. Any image scale or crop.
        model: ``(5, 3)`` 3D model in the same order (default :data:`FACE_MODEL_3D`).
        iterations: Levenberg-Marquardt iterations per starting pose.
    Returns:
        :class:`HeadPose` ``(yaw, pitch, roll)`` in degrees.
    """
    pts = as_points(landmarks, 5)
    m = _model(model)
    pts_c = pts - pts.mean(0)
    if np.abs(pts_c).max() < 1e-9:
        raise ValueError(f"the five landmarks coincide ({pts[0].tolist()}); no pose can be estimated")
    model_c = m - m.mean(0)
    eye = pts[1] - pts[0]
    roll0 = float(np.degrees(np.arctan2(eye[1], eye[0])))
    theta = np.array([[y, p, roll0] for y in _START_YAWS for p in _START_PITCHES])  # (S, 3)
    lam = np.full(len(theta), 1e-3)
    res = _residuals(theta, model_c, pts_c)  # (S, 10)
    cost = (res ** 2).sum(-1)
    eps = 1e-4
    for _ in range(iterations):
        # Forward-difference Jacobian of all candidates at once: (S, 10, 3).
        # (the three perturbations of every candidate in one call: numpy's per-call overhead is the cost here)
        shifted = _residuals((theta[:, None, :] + eps * np.eye(3)).reshape(-1, 3), model_c, pts_c)  # (S*3, 10)
        jac = np.swapaxes((shifted.reshape(len(theta), 3, -1) - res[:, None, :]) / eps, -1, -2)
        jtj = np.swapaxes(jac, -1, -2) @ jac  # (S, 3, 3)
        jtr = np.einsum("snk,sn->sk", jac, res)  # (S, 3)
        damp = jtj + lam[:, None, None] * (np.eye(3) * np.diagonal(jtj, 0, -2, -1)[:, None, :] + 1e-9 * np.eye(3))
        step = np.clip(np.linalg.solve(damp, -jtr[..., None])[..., 0], -30.0, 30.0)
        cand = theta + step
        cand_res = _residuals(cand, model_c, pts_c)
        cand_cost = (cand_res ** 2).sum(-1)
        better = cand_cost < cost
        theta = np.where(better[:, None], cand, theta)
        res = np.where(better[:, None], cand_res, res)
        cost = np.where(better, cand_cost, cost)
        lam = np.where(better, lam * 0.3, lam * 10.0)
        if np.all(np.abs(step).max(-1) < 1e-7) or np.all(lam > 1e8):
            break
    best = theta[np.argmin(cost)]
    rot = rotation_matrix(*best)
    proj = (model_c @ rot.T)[:, :2]
    if (proj * pts_c).sum() < 0:
        # A negative scale is the same picture as the face turned 180 degrees in-plane with a positive one.
        rot = rotation_matrix(0.0, 0.0, 180.0) @ rot
    # Report canonical angles (pitch in [-90, 90]) whatever the optimiser's unwrapped values.
    return euler_angles(rot)
