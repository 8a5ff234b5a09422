"""The ``lanfer`` command: argparse subcommands, each parsing its flags and calling one library function.

No logic lives here: every command is a thin face over a function in the package (see docs/DESIGN.md).
Errors the user can fix (bad config, missing file, bad data, a missing optional dependency) are printed as one
line and exit code 2; anything else, including an ImportError from lanfer's own code, keeps its traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=0.01 (repeatable)")


# Each _add_<command> registers one subcommand and sets `func`. Imports happen inside `func` so that
# `lanfer --help` stays fast and one command's optional dependency never breaks another command.

def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train LAN or the ResNet-18 baseline from a YAML config",
                       description="Train a model. Example: lanfer train configs/rafdb_lan.yaml "
                                   "--set data.root=/data/RAF-DB --out runs/rafdb_lan")
    p.add_argument("config", help="YAML config file, or the name of a packaged config (see `lanfer configs`)")
    _add_set(p)
    p.add_argument("--out", help="run directory (default: the config's `out`, else runs/train)")
    p.add_argument("--resume", action="store_true", help="continue exactly from OUT/last.ckpt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--cv", type=int, metavar="K", help="K-fold cross-validation (KDEF: --cv 10); one run per "
                   "fold in OUT/fold<k>, mean and std in OUT/cv_metrics.json")

    def run(a):
        from .config import load_config
        from .train import cross_validate, train

        cfg = load_config(a.config, a.overrides)
        progress = False if a.no_progress else None
        if a.cv:
            cross_validate(cfg, a.cv, out=a.out, resume=a.resume, progress=progress)
        else:
            train(cfg, out=a.out, resume=a.resume, progress=progress)

    p.set_defaults(func=run)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split or pose subset",
                       description="Evaluate a model file. Example: lanfer eval runs/rafdb_lan/best.safetensors "
                                   "--data configs/rafdb_lan.yaml --split test --subset val_raf_db_list_45.txt")
    p.add_argument("checkpoint", help="a lanfer model file (RUN_DIR/best.safetensors)")
    p.add_argument("--data", help="a YAML config whose data section to use, or a dataset name "
                                  "(default: the dataset recorded in the checkpoint)")
    p.add_argument("--root", help="dataset root (overrides the config's data.root)")
    p.add_argument("--split", default="test")
    p.add_argument("--subset", help="pose-list file (RAN format) restricting the split")
    _add_set(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="write metrics.json here (a folder or a .json path)")

    def run(a):
        from .evaluate import evaluate_checkpoint, format_metrics

        m = evaluate_checkpoint(a.checkpoint, data=a.data, root=a.root, split=a.split, subset=a.subset,
                                overrides=a.overrides, batch_size=a.batch_size, device=a.device, out=a.out)
        print(format_metrics(m, f"{a.checkpoint} on {m['dataset']['name']}/{a.split}"
                                + (f" subset {a.subset}" if a.subset else "")))

    p.set_defaults(func=run)


def _add_cluster(sub) -> None:
    p = sub.add_parser("cluster", help="fit the guidance map centres (K=2 per position) and write the file",
                       description="Example: lanfer cluster configs/rafdb_lan.yaml --set data.root=/data/RAF-DB "
                                   "--out runs/rafdb_guidance")
    p.add_argument("config")
    _add_set(p)
    p.add_argument("--out", help="folder for guidance.safetensors and its summary")

    def run(a):
        from .cluster import cluster
        from .config import load_config

        cluster(load_config(a.config, a.overrides), out=a.out)

    p.set_defaults(func=run)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on embedded synthetic data (the main job)",
                       description="Render a synthetic multi-view set, pretrain on identities, fit guidance, "
                                   "fine-tune ResNet-18 and LAN, report by view. Example: lanfer demo --out runs/demo")
    p.add_argument("--out", help="output folder (default runs/demo, or runs/demo-quick with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in under 2 minutes")
    p.add_argument("--resume", action="store_true", help="reuse every finished stage in --out")
    p.add_argument("--folds", type=int, help="identity-disjoint folds (KDEF protocol: 10)")
    p.add_argument("--identities", type=int, help="expression identities to render")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs per model and fold")
    p.add_argument("--image-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--pretrain-identities", type=int, help="people in the identity-pretraining set")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", dest="num_workers", type=int, metavar="N", help="data-loading processes")
    p.add_argument("--lr", type=float, help="fine-tuning learning rate")
    p.add_argument("--pretrain-epochs", type=int)
    p.add_argument("--pretrain-lr", type=float, help="identity-pretraining learning rate")
    p.add_argument("--augment", choices=("flip", "full", "none"), help="training augmentation, pretraining and fine-tuning (default flip)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), help="for pretraining and fine-tuning (default adamw)")

    def run(a):
        from .demo import DemoConfig, run_demo

        # every flag's dest is a DemoConfig field; flags left out keep the config's defaults
        kw = {f.name: getattr(a, f.name) for f in dataclasses.fields(DemoConfig)
              if f.name != "quick" and getattr(a, f.name, None) is not None}
        cfg = DemoConfig.quick_preset(**kw) if a.quick else DemoConfig(**kw)
        run_demo(cfg)

    p.set_defaults(func=run)


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="decode, crop and resize a dataset once into a fast memory-mapped cache",
                       description="Example: lanfer prepare configs/affectnet_lan.yaml --set data.root=/data/AffectNet "
                                   "--out /data/cache/affectnet-224; then train with --set data.name=prepared "
                                   "--set data.root=/data/cache/affectnet-224")
    p.add_argument("config", help="YAML config whose data section names the dataset")
    _add_set(p)
    p.add_argument("--out", help="cache folder (default prepared/<dataset>-<image_size>)")
    p.add_argument("--splits", help="comma-separated splits (default: the config's train/val/test; all for KDEF)")
    p.add_argument("--workers", type=int, help="decoding processes (default data.num_workers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(a):
        from .data.prepare import prepare, summarize

        print(summarize(prepare(a.config, out=a.out, splits=a.splits, overrides=a.overrides,
                                num_workers=a.workers, progress=not a.no_progress)))

    p.set_defaults(func=run)


def _add_datasets(sub) -> None:
    p = sub.add_parser("datasets", help="list dataset readers, or count a dataset folder's images per split",
                       description="Examples: lanfer datasets;  lanfer datasets rafdb /data/RAF-DB/basic;  "
                                   "lanfer datasets affectnet /data/AffectNet --option num_classes=7 --splits val")
    p.add_argument("name", nargs="?", help="dataset name (rafdb, ferplus, affectnet, kdef, fer2013, ...)")
    p.add_argument("root", nargs="?", help="the dataset's folder")
    p.add_argument("--splits", help="comma-separated splits (default train,test)")
    p.add_argument("--subset", help="pose-list file to apply")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. --option num_classes=7 (repeatable)")

    def run(a):
        from .data.inventory import datasets_text

        print(datasets_text(a.name, a.root, a.splits, a.subset, a.option))

    p.set_defaults(func=run)


def _add_pose_subsets(sub) -> None:
    p = sub.add_parser("pose-subsets", help="write RAN-style lists of the test images whose |yaw| exceeds thresholds",
                       description="Example: lanfer pose-subsets configs/rafdb_lan.yaml --thresholds 30,45 --out lists/ "
                                   "--set data.root=/data/RAF-DB/basic. Yaw comes from the dataset's metadata when "
                                   "it has one (KDEF, synth), else from detected landmarks (needs lanfer[faces]).")
    p.add_argument("config", metavar="DATASET_CONFIG", help="YAML config whose data section names the dataset")
    p.add_argument("--thresholds", default="30,45", type=_float_list, help="yaw thresholds in degrees (default 30,45)")
    p.add_argument("--out", required=True, help="folder for lanfer_pose_<t>_<name>_list.txt and pose_yaw_<name>.csv")
    p.add_argument("--split", default="test", help="dataset split (default test)")
    p.add_argument("--name", help="<name> in the file names (default: the dataset name)")
    p.add_argument("--detector", default="mtcnn", help="face detector for images without a metadata yaw")
    p.add_argument("--device", default="cpu", help="device for the detector (cpu, cuda)")
    p.add_argument("--no-meta-yaw", action="store_true", help="estimate every yaw from landmarks, ignoring metadata")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_set(p)

    def run(a):
        from .pose_subsets import run_pose_subsets

        print(run_pose_subsets(a.config, a.out, a.thresholds, split=a.split, overrides=a.overrides,
                               detector=a.detector, device=a.device, use_meta_yaw=not a.no_meta_yaw,
                               name=a.name, progress=not a.no_progress).summary())

    p.set_defaults(func=run)


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 30,45, got {text!r}") from None


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="render a synthetic multi-view facial-expression dataset (no assets needed)",
                       description="Example: lanfer synth --out data/synth --identities 4 --seed 1 writes "
                                   "4 x 2 sessions x 7 expressions x 5 views = 280 pictures in KDEF naming "
                                   "(DIR/KDEF/AF01/AF01ANHL.JPG) plus DIR/metadata.csv; the same seed gives the "
                                   "same bytes.")
    p.add_argument("--out", required=True, help="output folder (the dataset root)")
    p.add_argument("--identities", type=int, default=4, help="number of people (default 4)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--views", choices=["kdef", "continuous"], default="kdef",
                   help="kdef: the five KDEF views per expression; continuous: random poses (yaw in [-90, 90])")
    p.add_argument("--size", type=int, default=256, help="picture size in pixels (square face crops)")
    p.add_argument("--mode", choices=["expression", "identity"], default="expression",
                   help="identity: an image folder train/<id>/, test/<id>/ for face-identity pretraining")
    p.add_argument("--images-per-identity", type=int,
                   help="pictures per person (continuous views: default 35; identity mode: default 20)")
    p.add_argument("--expressions", type=int, choices=[7, 8], default=7, help="8 adds contempt (continuous views)")
    p.add_argument("--sessions", type=int, choices=[1, 2], default=2, help="KDEF sessions A/B per person")
    p.add_argument("--identity-offset", type=int, help="number of the first person (identity mode: default 1000)")
    p.add_argument("--background", choices=["clutter", "plain"], default="clutter")
    p.add_argument("--workers", type=int, help="parallel processes (default: all CPUs; output is the same)")

    def run(a):
        from .data.synth import generate

        root = generate(a.out, identities=a.identities, seed=a.seed, views=a.views, image_size=a.size,
                        sessions=a.sessions, expressions=a.expressions, images_per_identity=a.images_per_identity,
                        mode=a.mode, identity_offset=a.identity_offset, background=a.background,
                        workers=a.workers, progress=True)
        print(f"wrote {root} ({root / 'metadata.csv'})")

    p.set_defaults(func=run)


def _add_predict(sub) -> None:
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
    p.add_argument("--batch-size", type=int, default=32, help="face crops per model call (default 32)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--onnx", metavar="MODEL.onnx", help="run this exported model in ONNX Runtime instead of PyTorch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(a):
        from .predict import run_predict

        inputs, model = list(a.inputs), a.model
        # `lanfer predict CKPT INPUT...`, the original form, still works: a model file first is the model
        if model is None and len(inputs) > 1 and str(inputs[0]).endswith((".safetensors", ".onnx")):
            model, inputs = inputs[0], inputs[1:]
        table, summary = run_predict(model, inputs, out=a.out, format=a.format, overlay=a.overlay,
                                     detect=not a.no_detect, every_nth_frame=a.every_nth_frame, batch_size=a.batch_size,
                                     device=a.device, onnx=a.onnx, progress=not a.no_progress)
        print(summary)
        return 1 if table["status"].str.startswith("error").any() else 0  # some input could not be read

    p.set_defaults(func=run)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a model file to ONNX and check it against PyTorch",
                       description="Example: lanfer export runs/rafdb_lan/best.safetensors --format onnx --out "
                                   "lan.onnx --check-images faces/. Outputs logits and attention (LAN) or logits "
                                   "(baseline); fails if ONNX Runtime and PyTorch differ by more than 1e-4.")
    p.add_argument("checkpoint", help="a lanfer model file (RUN_DIR/best.safetensors)")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18; below 18 uses the legacy exporter)")
    p.add_argument("--image-size", type=int, help="input side (default: the checkpoint's)")
    p.add_argument("--check-images", nargs="+", metavar="DIR/FILES",
                   help="face-crop images or folders for the parity check, besides random inputs")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity check")

    def run(a):
        from .export import export_onnx, format_report

        print(format_report(export_onnx(a.checkpoint, a.out, opset=a.opset, image_size=a.image_size,
                                        check=not a.no_check, check_images=a.check_images)))

    p.set_defaults(func=run)


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the models shipped with lanfer, with their numbers",
                       description="Example: lanfer models. Shipped models work offline: lanfer predict photo.jpg "
                                   "--model NAME, Predictor.from_pretrained(NAME), create_model(ARCH, pretrained=TAG).")
    p.add_argument("--json", action="store_true", help="print each model's full record as JSON")

    def run(a):
        from .pretrained import models_table

        print(models_table(as_json=a.json))

    p.set_defaults(func=run)


def _add_ship(sub) -> None:
    p = sub.add_parser("ship", help="package a run's best model as float16 weights with a complete record",
                       description="Example: lanfer ship runs/ferplus_lan --eval pose30=runs/eval30/metrics.json "
                                   "--crop '{\"margin\": -0.085, \"shift_y\": -0.068, \"like\": \"ferplus\"}' "
                                   "--out lan.safetensors")
    p.add_argument("run", help="a run folder (best.safetensors, metrics.json, metrics.jsonl) or a model file")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=METRICS.json",
                   help="an extra evaluation to record (lanfer eval --out), e.g. pose30=runs/e30/metrics.json")
    p.add_argument("--crop", help="the face crop prediction should cut, as JSON (lanfer.info.FaceCrop fields)")

    def run(a):
        import json

        from .ship import ship

        evals = {}
        for item in a.eval:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise FileNotFoundError(f"--eval {item!r}: expected NAME=PATH/metrics.json")
            evals[name] = path
        crop = json.loads(a.crop) if a.crop else None
        print(f"wrote {ship(a.run, a.out, evals=evals, crop=crop, command='lanfer ship ' + ' '.join(sys.argv[2:]))}")

    p.set_defaults(func=run)


def _add_configs(sub) -> None:
    p = sub.add_parser("configs", help="list the experiment configs that ship with lanfer (one per paper row)",
                       description="Each name can stand in for a config path: lanfer train kdef_lan --cv 10. "
                                   "A file of that name in the current folder wins over the packaged one.")

    def run(a):
        from .config import configs_text

        print(configs_text())

    p.set_defaults(func=run)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="a local web page and HTTP API (POST /v1/predict) over a model",
                       description="Example: lanfer serve, then open http://127.0.0.1:8000/ (API reference at "
                                   "/docs). Binds 127.0.0.1 unless --host says otherwise; with --token (or "
                                   "$LANFER_TOKEN) every route but /healthz needs 'Authorization: Bearer TOKEN'.")
    p.add_argument("--model", metavar="NAME|PATH",
                   help="a shipped model name or a model file (default: the shipped default model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", help="bearer token required by every route but /healthz (default: $LANFER_TOKEN)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body in MB (413 above)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest picture in pixels (413 above)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (504 above)")
    p.add_argument("--max-batch", type=int, default=32, help="face crops per model call, across requests")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="how long a batch waits to fill")
    p.add_argument("--max-queue", type=int, default=256, help="faces waiting for the model (503 above)")
    p.add_argument("--detect-workers", type=int, default=2, help="threads running face detection")

    def run(a):
        from .serve import ServeConfig, run_server

        config = ServeConfig(host=a.host, port=a.port, token=a.token, max_upload_bytes=int(a.max_upload_mb * 2**20),
                             max_pixels=a.max_pixels, timeout_s=a.timeout, max_batch=a.max_batch,
                             max_wait_ms=a.max_wait_ms, max_queue_faces=a.max_queue, detect_workers=a.detect_workers)
        run_server(a.model, config, device=a.device)

    p.set_defaults(func=run)


def _add_cam(sub) -> None:
    p = sub.add_parser("cam", help="class activation maps of F_o, F_a and f, attention and guidance, per image",
                       description="Example: lanfer cam faces/*.png --out runs/cam (the shipped model), or lanfer cam "
                                   "runs/lan/best.safetensors runs/resnet18/best.safetensors faces/*.png --out runs/cam "
                                   "(two models side by side). Leading model files or run folders are the models.")
    p.add_argument("inputs", nargs="+", metavar="[MODEL ...] IMAGE",
                   help="model files (.safetensors), run folders or shipped model names first, then images")
    p.add_argument("--out", required=True, help="folder for one PNG per image and cam.json")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="CAM of this class (default: the predicted one)")
    p.add_argument("--guidance", metavar="FILE", help="guidance file (or folder) whose map to overlay "
                   "(default: the run folder's guidance.safetensors, when there is one)")
    p.add_argument("--labels", metavar="CSV", help="a CSV with path,label columns: true labels for the titles")
    p.add_argument("--detect", action="store_true", help="images are photos: detect and crop the largest face")

    def run(a):
        from pathlib import Path

        from .analysis.cam import run_cam
        from .pretrained import SHIPPED

        shipped = {s.name for s in SHIPPED} | {s.tag for s in SHIPPED}
        models, images = [], list(a.inputs)
        while len(images) > 1 and (images[0].endswith(".safetensors") or images[0] in shipped
                                   or (Path(images[0]) / "best.safetensors").is_file()):
            models.append(images.pop(0))
        labels = None
        if a.labels:
            import csv

            with open(a.labels, newline="") as f:
                labels = {r["path"]: r["label"] for r in csv.DictReader(f)}
        for path in run_cam(images, a.out, models or None, a.class_name, a.guidance, labels, a.detect):
            print(f"wrote {path}")

    p.set_defaults(func=run)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report of one or more runs (figures also as PNG)",
                       description="Example: lanfer report runs/lan runs/resnet18 --compare runs/cmp/compare.json "
                                   "--out runs/report.html. Figures go to <out stem>_figures/ as PNG too.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="the .html file to write")
    p.add_argument("--compare", metavar="JSON", help="a compare.json of lanfer compare to include")
    p.add_argument("--guidance", metavar="FILE", help="guidance file to summarise (default: the runs' own)")
    p.add_argument("--root", help="dataset root, where the runs' configs name another place")
    p.add_argument("--samples", type=int, default=2, metavar="N", help="correct and wrong faces per class (default 2)")
    p.add_argument("--title", help="page title")

    def run(a):
        from .analysis.report import write_report

        print(f"wrote {write_report(a.runs, a.out, compare=a.compare, guidance=a.guidance, root=a.root, per_class=a.samples, title=a.title)}")

    p.set_defaults(func=run)


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="paired significance between runs: McNemar exact test, bootstrap CI",
                       description="Examples: lanfer compare runs/lan runs/resnet18 --out runs/cmp;  lanfer compare "
                                   "--a runs/lan_s0 runs/lan_s1 --b runs/resnet18_s0 runs/resnet18_s1 --subset "
                                   "pose45=pose_45_ferplus_list.txt --out runs/cmp (seeds: mean +/- std, seed-matched pairs)")
    p.add_argument("runs", nargs="*", metavar="RUN", help="RUN_A RUN_B (or use --a/--b for groups of seeds)")
    p.add_argument("--a", nargs="+", default=[], metavar="RUN", help="side A: one run or one per seed")
    p.add_argument("--b", nargs="+", default=[], metavar="RUN", help="side B: one run or one per seed")
    p.add_argument("--subset", action="append", default=[], metavar="NAME=LIST",
                   help="a pose-list file to compare on too, e.g. pose45=pose_45_ferplus_list.txt (repeatable)")
    p.add_argument("--data", help="config or dataset name to evaluate on (default: each run's config.yaml)")
    p.add_argument("--root", help="dataset root (overrides the runs' data.root)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", help="folder for compare.json, compare.txt and cached predictions")
    p.add_argument("--bootstrap", type=int, default=10000, metavar="N", help="bootstrap replicates (default 10000)")
    p.add_argument("--device", default="auto")

    def run(a):
        from .analysis.compare import compare_runs, format_compare
        from .config import ConfigError

        runs_a, runs_b = list(a.a), list(a.b)
        if a.runs:
            if runs_a or runs_b or len(a.runs) != 2:
                raise ConfigError("give two runs (RUN_A RUN_B) or groups with --a ... --b ..., not both")
            runs_a, runs_b = [a.runs[0]], [a.runs[1]]
        if not runs_a or not runs_b:
            raise ConfigError("nothing to compare: give RUN_A RUN_B, or --a RUN... --b RUN...")
        subsets = {}
        for item in a.subset:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ConfigError(f"--subset {item!r}: expected NAME=LIST_FILE")
            subsets[name] = path
        print(format_compare(compare_runs(runs_a, runs_b, out=a.out, subsets=subsets, data=a.data, root=a.root,
                                          split=a.split, n_boot=a.bootstrap, device=a.device)))

    p.set_defaults(func=run)


def _add_ablate(sub) -> None:
    p = sub.add_parser("ablate", help="train a grid of alpha x fusion (x seeds): Figure 7 and Table 6 with mean +/- std",
                       description="Example: lanfer ablate ferplus_lan --alpha 0,0.25,0.5,0.75,1 --fusion add,concat,"
                                   "average --seeds 3 --out runs/ablate. Finished cells are reused on a second call.")
    p.add_argument("config", help="a LAN config (file or packaged name); everything but alpha, fusion and seed is kept")
    p.add_argument("--alpha", type=_float_list, default=[0.0, 0.25, 0.5, 0.75, 1.0], help="default 0,0.25,0.5,0.75,1")
    p.add_argument("--fusion", default="add,concat,average", help="comma-separated (default add,concat,average)")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds per cell: the config's seed, +1, ... (default 1)")
    p.add_argument("--out", required=True, help="folder for the cells, ablation.json/.txt and the plots")
    _add_set(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(a):
        from .analysis.ablate import format_ablation, run_ablation

        fusions = [f.strip() for f in a.fusion.split(",") if f.strip()]
        print(format_ablation(run_ablation(a.config, a.alpha, fusions, a.seeds, a.out, overrides=a.overrides,
                                           progress=not a.no_progress)))

    p.set_defaults(func=run)


# --- end of commands ---

COMMANDS: list = [_add_demo, _add_train, _add_eval, _add_cluster, _add_prepare, _add_datasets, _add_pose_subsets,
                  _add_synth, _add_predict, _add_export, _add_models, _add_ship, _add_configs,
                  _add_cam, _add_report, _add_compare, _add_ablate, _add_serve]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="lanfer", description="Pose-robust facial expression recognition (Local Attention Network).")
    parser.add_argument("--version", action="version", version=f"lanfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from .config import ConfigError
    from .data.base import DataError
    from .devices import DeviceError

    errors: list[type[BaseException]] = [ConfigError, DataError, DeviceError, FileNotFoundError]
    try:  # both import torch; where it is missing, no command that could raise them runs
        from .checkpoint import CheckpointError
        from .guidance import GuidanceError
        from .train import NonFiniteLossError
        errors += [CheckpointError, GuidanceError, NonFiniteLossError]
    except ImportError:
        pass
    return tuple(errors)


# The optional dependencies, by top-level module, and the extra of pyproject.toml that installs each (None: not
# in an extra). Keep in step with [project.optional-dependencies].
OPTIONAL_MODULES: dict[str, str | None] = {
    "facenet_pytorch": "faces", "cv2": "faces",
    "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx",
    "sklearn": "test", "pytest": "test",
    "fastapi": "serve", "uvicorn": "serve", "python_multipart": "serve",
    "tensorboard": None,
}


def missing_optional(error: ImportError) -> str | None:
    """The one-line message for ``error`` when it is a missing optional dependency, else None.

    The exception and the ones it was raised from (lanfer re-raises with an install hint) are searched for an
    ImportError naming an optional module. Anything else, such as an import that fails inside lanfer itself or
    a missing core dependency, is a bug or a broken install and keeps its traceback.
    """
    err: BaseException | None = error
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        module = (getattr(err, "name", None) or "").split(".")[0] if isinstance(err, ImportError) else ""
        if module in OPTIONAL_MODULES:
            message = str(error)
            if "pip install" in message:  # lanfer's own hint already says what to install
                return message
            extra = OPTIONAL_MODULES[module]
            how = f'pip install "lanfer[{extra}]"' if extra else f"pip install {module}"
            return f"{message}; this command needs the optional dependency {module}: {how}"
        err = err.__cause__ or err.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except _user_errors() as e:
        print(f"lanfer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        message = missing_optional(e)
        if message is None:
            raise  # not a missing extra: an import broken inside lanfer is a bug, so show where
        print(f"lanfer {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lanfer {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
