"""Faces in photos: detection with five landmarks, alignment to a template, and head pose.

Typical use (what ``lanfer predict`` does on a raw photo)::

    from lanfer.faces import get_detector, align_face, estimate_pose
    detector = get_detector()                        # BlazeFace; "mtcnn" needs pip install 'lanfer[faces]'
    for face in detector.detect([image])[0]:         # image: (H, W, 3) uint8 RGB
        crop = align_face(image, face.landmarks)     # (224, 224, 3), ArcFace template + 10% margin
        yaw, pitch, roll = estimate_pose(face.landmarks)

This package knows no datasets and no models; two detectors are registered (``"blazeface"``, the default, and
``"mtcnn"``), others plug in through :func:`register_detector`.
"""
from .align import (ARCFACE_TEMPLATE, DEFAULT_MARGIN, DEFAULT_SIZE, align_face, alignment_matrix, crop_face,
                    estimate_similarity, face_template, invert_affine, transform_points, warp)
from .detect import (DEFAULT_DETECTOR, LANDMARK_NAMES, MTCNN_MIN_FACE, Face, FaceDetector, MTCNNDetector,
                     available_detectors, detector_backends, get_detector, register_detector)
from .blazeface import BlazeFaceDetector
from .pose import FACE_MODEL_3D, HeadPose, estimate_pose, euler_angles, project_landmarks, rotation_matrix

__all__ = [
    "ARCFACE_TEMPLATE", "DEFAULT_MARGIN", "DEFAULT_SIZE", "align_face", "alignment_matrix", "crop_face", "estimate_similarity",
    "face_template", "invert_affine", "transform_points", "warp",
    "DEFAULT_DETECTOR", "LANDMARK_NAMES", "MTCNN_MIN_FACE", "Face", "FaceDetector", "MTCNNDetector",
    "available_detectors", "detector_backends", "get_detector", "register_detector", "BlazeFaceDetector",
    "FACE_MODEL_3D", "HeadPose", "estimate_pose", "euler_angles", "project_landmarks", "rotation_matrix",
]
