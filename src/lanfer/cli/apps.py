"""``lanfer`` commands: the demo and the web server."""
from __future__ import annotations

import dataclasses

from ._args import add_detector_flag, add_prior_tau_flag, min_face_size


def add_demo(sub) -> None:
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
    p.add_argument("--amp", choices=("none", "auto", "bf16", "fp16"),
                   help="training precision (default none: fp32, the same numbers on every CPU; see train.amp)")

    def run(a):
        from ..demo import DemoConfig, run_demo

        # every flag's dest is a DemoConfig field; flags left out keep the config's defaults
        kw = {f.name: getattr(a, f.name) for f in dataclasses.fields(DemoConfig)
              if f.name != "quick" and getattr(a, f.name, None) is not None}
        cfg = DemoConfig.quick_preset(**kw) if a.quick else DemoConfig(**kw)
        run_demo(cfg)

    p.set_defaults(func=run)


def add_serve(sub) -> None:
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
    p.add_argument("--max-discard-mb", type=float, default=64.0,
                   help="MB more of a refused body read and dropped so that every client sees the 413 (0: none)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest picture in pixels (413 above)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (504 above)")
    p.add_argument("--max-batch", type=int, default=32, help="face crops per model call, across requests")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="how long a batch waits to fill")
    p.add_argument("--max-queue", type=int, default=256, help="faces waiting for the model (503 above)")
    p.add_argument("--detect-workers", type=int, default=2, help="threads running face detection")
    add_detector_flag(p)
    p.add_argument("--min-face-size", type=min_face_size, metavar="PX",
                   help="drop faces narrower than this, in pixels (default: none; MTCNN searches from 20, and "
                        "larger is faster for it)")
    add_prior_tau_flag(p)

    def run(a):
        from ..serve import ServeConfig, run_server

        config = ServeConfig(host=a.host, port=a.port, token=a.token, max_upload_bytes=int(a.max_upload_mb * 2**20),
                             max_pixels=a.max_pixels, timeout_s=a.timeout, max_batch=a.max_batch,
                             max_wait_ms=a.max_wait_ms, max_queue_faces=a.max_queue, detect_workers=a.detect_workers,
                             min_face_size=a.min_face_size, max_discard_bytes=int(a.max_discard_mb * 2**20),
                             detector=a.detector)
        run_server(a.model, config, device=a.device, prior_tau=a.prior_tau)

    p.set_defaults(func=run)

