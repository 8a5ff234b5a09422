"""Port dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) from face-api's TF.js weights
to lanfer's DlibResNetBackbone.

Run once; the package ships the result (``src/lanfer/weights/backbones/dlib_resnet_faceid.safetensors``) and
never reads the original at run time.

    python scripts/port/convert_dlib_resnet.py                   # npm pack -> convert -> write the file
    python scripts/port/convert_dlib_resnet.py --check [--faces DIR_OR_IMAGES ...] [--record-test]
                                                                 # + compare with face-api's own net in Node

Where the weights come from: the npm package ``@vladmandic/face-api`` 1.7.15 (MIT), files
``model/face_recognition_model-weights_manifest.json`` + ``face_recognition_model.bin``: Davis King's dlib
model, converted to TF.js by Vincent Mühler (face-api.js), 109 of its 117 tensors stored as uint8 (each
``q * scale + min``, 256 levels; the eight conv64 filter banks as float32). dlib's own float32 file (``dlib_face_recognition_resnet_model_v1.dat``, in the PyPI sdist
``face-recognition-models`` 0.3.0 under CC0 1.0) was not used: reading dlib's serialisation would be a second
parser to trust, and the only runtime this port can be checked against here is face-api's, which runs the
uint8 copy. So the port is exact to face-api, and differs from dlib by face-api's quantisation.

The forward (face-api ``src/faceRecognitionNet/``): RGB minus the means (122.782, 117.001, 104.298), divided
by 255 (dlib divides by 256; face-api's 255 is kept, normalisation ``"dlib_rgb"``); a 7x7 stride-2 convolution
with "valid" padding, a scale layer, ReLU, a 3x3 stride-2 max pool; 14 residual blocks of two 3x3 convolutions
(each followed by a scale layer), the four "down" blocks with a stride-2 "valid" first convolution and a 2x2
average-pooled shortcut zero-padded in channels; the mean of the lattice; a bias-free FC layer to 128-d. Each
scale layer (x * w + b) is folded here into the convolution before it. The FC matrix is kept in the file as
``descriptor.weight`` (128, 256), for the identity benchmark and this check; the backbone does not use it.

``--check`` runs face-api's own ``FaceRecognitionNet`` in Node (``scripts/port/faceapi_recognition_run.cjs``,
tfjs 4.22 WASM, from ``scripts/setup_peers.sh``'s cache) on real face crops at 150 px and records the largest
absolute differences of the 128-d descriptor and of the last lattice in ``results/port/dlib_resnet_faceid.json``;
``--record-test`` also writes the unit test's fixture (``tests/data/port/dlib_*``).
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
from lanfer.model.backbones import DLIB_RESNET_BLOCKS, DlibResNetBackbone

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helper beside this script, however it is run
import _npm  # noqa: E402

PACKAGE = "@vladmandic/face-api"
VERSION = "1.7.15"
TARBALL_SHA1 = "10cddf5c405f6f52f37605c9ee28c91ac6a23ead"  # npm's shasum for 1.7.15
MANIFEST = "package/model/face_recognition_model-weights_manifest.json"
MEMBERS = (MANIFEST, "package/model/face_recognition_model.bin", "package/LICENSE", "package/package.json")
REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "src/lanfer/weights/backbones/dlib_resnet_faceid.safetensors"
RECORD = REPO / "results/port/dlib_resnet_faceid.json"
FIXTURE = REPO / "tests/data/port"
FRM_SDIST_SHA256 = "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf"
SIZE = 150  # dlib's and face-api's input side
RGB_MEAN = np.array([122.782, 117.001, 104.298], dtype=np.float32)  # face-api's, dlib's input_rgb_image
LICENSE = ("weights: MIT (npm @vladmandic/face-api 1.7.15, 'Copyright (c) Vladimir Mandic'; converted to TF.js "
           "by face-api.js, mostly uint8-quantised); original model: dlib_face_recognition_resnet_model_v1 by Davis "
           "King, who writes 'I've released them into the public domain' (davisking/dlib-models README), shipped "
           "under 'CC0 1.0 Universal' (its LICENSE) in PyPI face-recognition-models 0.3.0; trained on about 3 million faces of 7485 identities (FaceScrub, "
           "the VGG face dataset and images scraped from the internet), whose own terms govern the images; check "
           "them before commercial use")


def cache_dir() -> Path:
    return _npm.cache_dir("face-api")


def fetch(cache: Path) -> Path:
    """npm-pack the package into ``cache`` (once), check its SHA-1, extract the files this port needs."""
    return _npm.npm_fetch(cache, PACKAGE, VERSION, TARBALL_SHA1, MEMBERS, "13 MB")


def read_quantized_weights(manifest: Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF.js weights manifest, dequantised as tfjs does (uint8: ``q * scale + min``; this
    manifest stores 109 tensors so and the eight conv64 filter banks as plain float32). Any other encoding
    fails here rather than loading garbage."""
    spec = json.loads(manifest.read_text())
    out, offset = {}, 0
    blobs = b"".join((manifest.parent / p).read_bytes() for g in spec for p in g["paths"])
    for g in spec:
        for w in g["weights"]:
            q = w.get("quantization")
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            if w["dtype"] == "float32" and q is None:
                out[w["name"]] = np.frombuffer(blobs, "<f4", n, offset).reshape(w["shape"]).copy()
                offset += 4 * n
            elif w["dtype"] == "float32" and q.get("dtype") == "uint8":
                raw = np.frombuffer(blobs, np.uint8, n, offset).astype(np.float32)
                out[w["name"]] = (raw * np.float32(q["scale"]) + np.float32(q["min"])).reshape(w["shape"])
                offset += n
            else:
                raise ValueError(f"{manifest}: weight {w['name']} is {w['dtype']} {q}; expected float32, plain or "
                                 "uint8-quantised")
    if offset != len(blobs):
        raise ValueError(f"{manifest}: manifest covers {offset} of {len(blobs)} bytes")
    return out


def convert(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """face-api's tensors -> DlibResNetBackbone's state dict (OIHW, scale layers folded) + ``descriptor.weight``."""
    used: set[str] = set()

    def conv_layer(prefix: str, c_in: int, c_out: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        names = [f"{prefix}/conv/filters", f"{prefix}/conv/bias", f"{prefix}/scale/weights", f"{prefix}/scale/biases"]
        w, b, s, beta = (weights[n] for n in names)
        used.update(names)
        if w.shape != (k, k, c_in, c_out) or b.shape != s.shape != beta.shape != (c_out,):
            raise ValueError(f"{prefix}: filters {w.shape}, bias {b.shape}; expected ({k}, {k}, {c_in}, {c_out})")
        # (conv(x) + b) * s + beta = conv_{w * s}(x) + (b * s + beta)
        weight = (w * s).transpose(3, 2, 0, 1)  # HWIO -> OIHW (C_out, C_in, k, k)
        return torch.from_numpy(weight.copy()), torch.from_numpy(b * s + beta)

    state: dict[str, torch.Tensor] = {}
    state["stem.weight"], state["stem.bias"] = conv_layer("conv32_down", 3, 32, 7)
    c = 32
    for i, (name, c_out, _) in enumerate(DLIB_RESNET_BLOCKS):
        state[f"blocks.{i}.conv1.weight"], state[f"blocks.{i}.conv1.bias"] = conv_layer(f"{name}/conv1", c, c_out, 3)
        state[f"blocks.{i}.conv2.weight"], state[f"blocks.{i}.conv2.bias"] = conv_layer(f"{name}/conv2", c_out, c_out, 3)
        c = c_out
    fc = weights["fc"]  # (256, 128): descriptor = mean(lattice) @ fc
    used.add("fc")
    if fc.shape != (256, 128):
        raise ValueError(f"fc {fc.shape}, expected (256, 128)")
    left = sorted(set(weights) - used)
    if left:
        raise ValueError(f"face-api tensors the port does not use: {left}")
    own = DlibResNetBackbone().state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if bad or len(state) != len(own):
        raise ValueError(f"port does not fill DlibResNetBackbone: {bad[:5]}")
    state["descriptor.weight"] = torch.from_numpy(fc.T.copy())  # (128, 256), outside the backbone
    return {k: v.contiguous() for k, v in state.items()}


def faceapi_outputs(model_dir: Path, faces_u8: np.ndarray, node_modules: Path) -> tuple[np.ndarray, np.ndarray]:
    """face-api's own net in Node on (N, 150, 150, 3) RGB uint8 faces: (descriptors (N, 128), lattice NHWC)."""
    script = Path(__file__).with_name("faceapi_recognition_run.cjs")
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "faces.u8"
        np.ascontiguousarray(faces_u8, dtype=np.uint8).tofile(inp)
        env = {**os.environ, "NODE_PATH": str(node_modules)}
        subprocess.run(["node", str(script), str(model_dir), str(inp), str(len(faces_u8)), tmp], check=True, env=env)
        meta = json.loads((Path(tmp) / "outputs.json").read_text())
        desc = np.fromfile(Path(tmp) / "descriptors.f32", dtype="<f4").reshape(meta["descriptors"])
        lattice = np.fromfile(Path(tmp) / "lattice.f32", dtype="<f4").reshape(meta["lattice"])
        return desc, lattice


def port_outputs(backbone: DlibResNetBackbone, descriptor: torch.Tensor, faces_u8: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The port's (descriptors (N, 128), lattice NHWC), fed through lanfer's own ``"dlib_rgb"`` normalisation."""
    from lanfer.data.presets import normalization

    mean, std = normalization("dlib_rgb")
    x = torch.from_numpy(faces_u8.astype(np.float32) / 255).permute(0, 3, 1, 2)  # (N, 3, 150, 150) in [0, 1]
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        lattice = backbone(x)  # (N, 256, h, w)
        desc = lattice.mean(dim=(2, 3)) @ descriptor.float().T  # (N, 128)
    return desc.numpy(), lattice.permute(0, 2, 3, 1).numpy()


def load_faces(paths: list[Path], n: int, size: int = SIZE) -> np.ndarray:
    """Up to ``n`` face images (files, or images in folders), resized to ``size`` and RGB (a gray face is
    replicated to three channels): (N, size, size, 3) uint8."""
    from PIL import Image

    files: list[Path] = []
    for p in paths:
        files += sorted(q for q in p.iterdir() if q.suffix.lower() in (".png", ".jpg", ".jpeg")) if p.is_dir() else [p]
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)
                     for f in files[:n]])


def check(package: Path, state: dict[str, torch.Tensor], faces: list[Path], node_modules: Path, n: int,
          record_test: bool, dtype: torch.dtype) -> dict:
    backbone = DlibResNetBackbone().eval()
    backbone.load_state_dict({k: v.to(dtype).float() for k, v in state.items() if k != "descriptor.weight"})
    descriptor = state["descriptor.weight"].to(dtype).float()
    images = load_faces(faces, n)
    ref_d, ref_l = faceapi_outputs(package / "model", images, node_modules)
    our_d, our_l = port_outputs(backbone, descriptor, images)
    cos = (ref_d * our_d).sum(1) / np.linalg.norm(ref_d, axis=1) / np.linalg.norm(our_d, axis=1)
    result = {"faces": [str(f) for f in faces], "n_faces": len(images), "size": SIZE, "weights_dtype": str(dtype),
              "descriptor": {"shape": list(ref_d.shape), "max_abs_diff": float(np.abs(ref_d - our_d).max()),
                             "max_abs_value": float(np.abs(ref_d).max()), "min_cosine": float(cos.min())},
              "lattice": {"shape": list(ref_l.shape), "max_abs_diff": float(np.abs(ref_l - our_l).max()),
                          "max_abs_value": float(np.abs(ref_l).max())}}
    print(f"{len(images)} faces at {SIZE} px ({dtype}): descriptor max |diff| {result['descriptor']['max_abs_diff']:.2e} "
          f"(of {result['descriptor']['max_abs_value']:.3f}), lattice {result['lattice']['max_abs_diff']:.2e} "
          f"(of {result['lattice']['max_abs_value']:.2f}), min cosine {cos.min():.7f}")
    if record_test:
        # the unit test's fixture: one 150 px face (as a PNG) and face-api's descriptor and lattice for it
        from PIL import Image

        FIXTURE.mkdir(parents=True, exist_ok=True)
        first = images[0]
        gray = bool((first == first[..., :1]).all())  # a FERPlus face: store one channel (5 KB, not 15)
        Image.fromarray(first[..., 0] if gray else first).save(FIXTURE / "dlib_input_150.png")
        face = np.asarray(Image.open(FIXTURE / "dlib_input_150.png").convert("RGB"), dtype=np.uint8)[None]
        d, lat = faceapi_outputs(package / "model", face, node_modules)
        np.savez(FIXTURE / "dlib_faceapi_150.npz", descriptor=d.astype(np.float32), lattice=lat.astype(np.float32))
        print(f"wrote {FIXTURE / 'dlib_input_150.png'} and dlib_faceapi_150.npz (descriptor {d.shape}, lattice {lat.shape})")
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=None, help="where the npm tarball is kept (default "
                    "$LANFER_CACHE/ports/face-api, LANFER_CACHE defaulting to ~/.cache/lanfer)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with face-api's own net run by tfjs in Node")
    ap.add_argument("--faces", type=Path, nargs="*", default=[], help="face images or folders for --check")
    ap.add_argument("--n-faces", type=int, default=32)
    ap.add_argument("--node-modules", type=Path, default=None, help="a node_modules folder holding "
                    "@vladmandic/face-api 1.7.15 and @tensorflow/tfjs(-backend-wasm) 4.22 (default: the peers cache)")
    ap.add_argument("--record-test", action="store_true", help="also (re)write the unit test's fixture")
    args = ap.parse_args(argv)
    package = fetch(args.cache or cache_dir())
    manifest = package / "model/face_recognition_model-weights_manifest.json"
    weights = read_quantized_weights(manifest)
    state = convert(weights)
    meta = {
        "format": "lanfer-backbone", "backbone": "dlib_resnet", "normalize": "dlib_rgb",
        "source": f"npm {PACKAGE}@{VERSION} model/face_recognition_model-weights_manifest.json + "
                  "face_recognition_model.bin (uint8-quantised but for the conv64 filters)",
        "original": "dlib_face_recognition_resnet_model_v1 (Davis King, https://github.com/davisking/dlib-models; "
                    "LFW 99.38%, trained on about 3 million faces of 7485 identities)",
        "tarball_sha1": TARBALL_SHA1,
        "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "bin_sha256": hashlib.sha256((package / "model/face_recognition_model.bin").read_bytes()).hexdigest(),
        "stored_dtype": "float32",
        "original_license_checked_in": "PyPI face-recognition-models 0.3.0 sdist face_recognition_models-0.3.0.tar.gz "
                                       f"(sha256 {FRM_SDIST_SHA256}): LICENSE begins 'CC0 1.0 Universal'; "
                                       "models/dlib_face_recognition_resnet_model_v1.dat, 22466066 bytes",
        "extra_tensors": "descriptor.weight (128, 256): dlib's bias-free FC layer, descriptor = mean(F_o) @ W.T",
        "license": LICENSE,
        "command": "python scripts/port/convert_dlib_resnet.py",
        "lanfer_version": lanfer.__version__,
    }
    # float32: in float16 the lattice moves by up to 4.4e-3 from face-api's (the --check record), over the
    # 1e-3 a port is held to, for 11 MB saved
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata=meta)
    n = sum(v.numel() for k, v in state.items() if k != "descriptor.weight")
    print(f"wrote {args.out} ({n:,} backbone parameters + descriptor (128, 256), float32, "
          f"{args.out.stat().st_size / 2**20:.1f} MB)")
    if args.check:
        node_modules = args.node_modules or (Path(os.environ.get("LANFER_CACHE", Path.home() / ".cache/lanfer"))
                                             / "peers/node/node_modules")
        result = {"float32_shipped": check(package, state, args.faces, node_modules, args.n_faces, args.record_test,
                                           torch.float32),
                  "float16_not_shipped": check(package, state, args.faces, node_modules, args.n_faces, False,
                                               torch.float16)}
        result.update(source=meta["source"], tarball_sha1=TARBALL_SHA1, torch=torch.__version__, tfjs="4.22.0 (wasm)",
                      command="python scripts/port/convert_dlib_resnet.py " + " ".join(sys.argv[1:]))
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {RECORD}")


if __name__ == "__main__":
    main()
