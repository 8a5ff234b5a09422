"""``lanfer`` commands: predict with a model, export, list, calibrate, ship, and the shipped configs."""
from __future__ import annotations

import sys

from ._args import SMOOTH, add_detector_flag, add_prior_tau_flag, add_set_flag, frame_count, min_face_size, \
    named_files, prior_tau_or_auto, smooth_factor


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="expressions of the faces in photos, folders, videos or a webcam",
                       description="Detect, align and classify every face; writes OUT/predictions.csv and, with "
                                   "--overlay, annotated images/videos in OUT/overlays/. Example: lanfer predict "
                                   "photo.jpg (the shipped default model), or lanfer predict "
                                   "runs/rafdb_lan/best.safetensors photos/ clip.mp4 --overlay --every-nth-frame 5. "
                                   "Exit code 1 when any input could not be read (its row says why), 2 on a usage "
                                   "error.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image, video (mp4/avi/mov/mkv/webm), folder (searched recursively) or camera index; a "
                        "first argument that is a model file (.safetensors/.onnx) is taken as the model")
    p.add_argument("--model", metavar="NAME|PATH",
                   help="a shipped model name (lanfer models) or a model file; default: the shipped default model")
    p.add_argument("--out", default="runs/predict", help="output folder (default runs/predict)")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="predictions file format")
    p.add_argument("--overlay", action="store_true", help="write annotated images and videos to OUT/overlays/")
    p.add_argument("--no-detect", action="store_true", help="inputs are aligned face crops: one face per image")
    p.add_argument("--every-nth-frame", type=int, default=1, metavar="N", help="keep every N-th video frame")
    p.add_argument("--detect-every", type=frame_count, default=1, metavar="K",
                   help="videos: run the face detector on every K-th kept frame only, and cut the frames between "
                        "where each tracked face was last found (faster; moving faces are cut up to K-1 frames "
                        "late; default 1: every frame)")
    p.add_argument("--classify-every", type=frame_count, default=1, metavar="K",
                   help="videos: classify each tracked face on every K-th frame of its track only; the frames "
                        "between reuse its last probabilities (faster; a change of expression shows up to K-1 "
                        "frames late; default 1: every frame)")
    p.add_argument("--smooth", type=smooth_factor, default=SMOOTH, metavar="F",
                   help=f"videos: each tracked face's probabilities are a moving average, F x the previous ones + "
                        f"(1 - F) x this frame's, and its label their arg max (0: off; default {SMOOTH:g}); "
                        "photos are never smoothed")
    add_detector_flag(p)
    p.add_argument("--min-face-size", type=min_face_size, metavar="PX",
                   help="drop faces narrower than this, in pixels (default: none; MTCNN searches from 20); with "
                        "--detector mtcnn a larger value also skips its most expensive pyramid levels: 40 made "
                        "video 1.7x faster (README, Performance)")
    p.add_argument("--batch-size", type=int, default=32, help="face crops per model call (default 32)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--onnx", metavar="MODEL.onnx", help="run this exported model in ONNX Runtime instead of PyTorch")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="onnx: export the model in memory and run it in ONNX Runtime (needs lanfer[onnx]); on a CPU "
                        "it classified a face in about half PyTorch's time (README, Video and webcam); BlazeFace's "
                        "network runs there too (MTCNN stays in PyTorch)")
    add_prior_tau_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(a):
        from ..predict import run_predict

        inputs, model = list(a.inputs), a.model
        # `lanfer predict CKPT INPUT...`, the original form, still works: a model file first is the model
        if model is None and len(inputs) > 1 and str(inputs[0]).endswith((".safetensors", ".onnx")):
            model, inputs = inputs[0], inputs[1:]
        table, summary = run_predict(model, inputs, out=a.out, format=a.format, overlay=a.overlay,
                                     detect=not a.no_detect, every_nth_frame=a.every_nth_frame, batch_size=a.batch_size,
                                     device=a.device, onnx=a.onnx, progress=not a.no_progress,
                                     min_face_size=a.min_face_size, prior_tau=a.prior_tau,
                                     detect_every=a.detect_every, classify_every=a.classify_every,
                                     smooth=a.smooth, detector=a.detector, backend=a.backend)
        print(summary)
        return 1 if table["status"].str.startswith("error").any() else 0  # some input could not be read

    p.set_defaults(func=run)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a model file to ONNX and check it against PyTorch",
                       description="Example: lanfer export runs/rafdb_lan/best.safetensors --format onnx --out "
                                   "lan.onnx --check-images faces/. Outputs logits, attention (LAN only) and "
                                   "probabilities (the model's temperature and prior adjustment baked in); fails if "
                                   "ONNX Runtime and PyTorch differ by more than 1e-4.")
    p.add_argument("checkpoint", help="a lanfer model file (RUN_DIR/best.safetensors)")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18; below 18 uses the legacy exporter)")
    p.add_argument("--image-size", type=int, help="input side (default: the checkpoint's)")
    p.add_argument("--check-images", nargs="+", metavar="DIR/FILES",
                   help="face-crop images or folders for the parity check, besides random inputs")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity check")

    def run(a):
        from ..export import export_onnx, format_report

        print(format_report(export_onnx(a.checkpoint, a.out, opset=a.opset, image_size=a.image_size,
                                        check=not a.no_check, check_images=a.check_images)))

    p.set_defaults(func=run)


def add_models(sub) -> None:
    p = sub.add_parser("models", help="list the models shipped with lanfer, with their numbers",
                       description="Example: lanfer models. Shipped models work offline: lanfer predict photo.jpg "
                                   "--model NAME, Predictor.from_pretrained(NAME), create_model(ARCH, pretrained=TAG).")
    p.add_argument("--json", action="store_true", help="print each model's full record as JSON")

    def run(a):
        from ..pretrained import models_table

        print(models_table(as_json=a.json))

    p.set_defaults(func=run)


def add_ship(sub) -> None:
    p = sub.add_parser("ship", help="package a run's best model as float16 weights with a complete record",
                       description="Example: lanfer ship runs/ferplus_lan --eval pose30=runs/eval30/metrics.json "
                                   "--crop '{\"margin\": -0.085, \"shift_y\": -0.068, \"like\": \"ferplus\"}' "
                                   "--out lan.safetensors")
    p.add_argument("run", help="a run folder (best.safetensors, metrics.json, metrics.jsonl) or a model file")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=METRICS.json",
                   help="an extra evaluation to record (lanfer eval --out), e.g. pose30=runs/e30/metrics.json")
    p.add_argument("--crop", help="the face crop prediction should cut, as JSON (lanfer.info.FaceCrop fields)")
    p.add_argument("--calibrate", action="store_true",
                   help="then calibrate the shipped file on the validation split (lanfer calibrate: class prior, "
                        "prior tau, temperature); needs the dataset (--root, --set)")
    _add_calibration_flags(p)

    def run(a):
        import json

        from ..calibration import tau_grid
        from ..ship import ship

        evals = named_files(a.eval, "--eval", "pose30=runs/e30/metrics.json")
        crop = json.loads(a.crop) if a.crop else None
        calibrate = dict(data=a.data, root=a.root, split=a.split, overrides=a.overrides, prior_tau=a.prior_tau,
                         min_recall=a.min_recall, taus=tau_grid(a.min_tau), device=a.device) if a.calibrate else None
        out = ship(a.run, a.out, evals=evals, crop=crop, command='lanfer ship ' + ' '.join(sys.argv[2:]),
                   calibrate=calibrate)
        print(f"wrote {out}" + (f" (calibrated: {out.with_suffix('.calibration.json')})" if a.calibrate else ""))

    p.set_defaults(func=run)


def _add_calibration_flags(p) -> None:
    p.add_argument("--data", help="a YAML config whose data section to use, or a dataset name (default: the "
                                  "dataset recorded in the model file)")
    p.add_argument("--root", help="dataset root (overrides the recorded one)")
    p.add_argument("--split", default="val", help="the split tau and the temperature are fitted on (default val)")
    add_set_flag(p)
    p.add_argument("--prior-tau", type=prior_tau_or_auto, default="auto", metavar="auto|TAU",
                   help="the operating point's logit adjustment (tau x log prior): auto (default) picks the "
                        "smallest tau with every class at --min-recall on the split, else the best mean class "
                        "accuracy; a number ships that tau (0: none)")
    p.add_argument("--min-recall", type=float, default=0.40, help="the recall floor of --prior-tau auto (0.40)")
    p.add_argument("--min-tau", type=float, default=0.0,
                   help="the sweep's lowest tau (default 0; the sweep runs to 2 in steps of 0.1). Negative for a "
                        "model trained with loss.logit_adjust X: tau -X gives back the plain classifier")
    p.add_argument("--device", default="auto")


def add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a model's temperature and class-prior operating point on validation",
                       description="Choose the prior tau (probabilities = softmax((logits - tau log prior) / T)) "
                                   "and fit the temperature T on the validation split, and write a new model file "
                                   "with them and a JSON record (the tau table, T, ECE before and after). Example: "
                                   "lanfer calibrate lan_resnet18_ferplus --root $FERPLUS --out "
                                   "lan_calibrated.safetensors")
    p.add_argument("model", help="a model file or a shipped model's name")
    p.add_argument("--out", required=True, help="the .safetensors file to write (not the input, unless --overwrite)")
    p.add_argument("--record", help="the JSON record (default: OUT with the suffix .calibration.json)")
    p.add_argument("--overwrite", action="store_true", help="allow --out to be the input model file")
    _add_calibration_flags(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(a):
        from ..calibrate import calibrate, format_calibration
        from ..calibration import tau_grid
        from ..pretrained import resolve

        rec = calibrate(resolve(a.model), a.out, data=a.data, root=a.root, split=a.split, overrides=a.overrides,
                        prior_tau=a.prior_tau, min_recall=a.min_recall, taus=tau_grid(a.min_tau), record=a.record,
                        overwrite=a.overwrite,
                        batch_size=a.batch_size, device=a.device, progress=not a.no_progress,
                        command="lanfer calibrate " + " ".join(sys.argv[2:]))
        print(format_calibration(rec))

    p.set_defaults(func=run)


def add_configs(sub) -> None:
    p = sub.add_parser("configs", help="list the experiment configs that ship with lanfer (one per paper row)",
                       description="Each name can stand in for a config path: lanfer train kdef_lan --cv 10. "
                                   "A file of that name in the current folder wins over the packaged one.")

    def run(a):
        from ..config import configs_text

        print(configs_text())

    p.set_defaults(func=run)

