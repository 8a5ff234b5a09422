"""``lanfer`` commands: train, evaluate, fit the guidance, and the ablation grid."""
from __future__ import annotations

from ._args import add_prior_tau_flag, add_set_flag, float_list, named_files


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train LAN or the ResNet-18 baseline from a YAML config",
                       description="Train a model. Example: lanfer train configs/rafdb_lan.yaml "
                                   "--set data.root=/data/RAF-DB --out runs/rafdb_lan")
    p.add_argument("config", help="YAML config file, or the name of a packaged config (see `lanfer configs`)")
    add_set_flag(p)
    p.add_argument("--out", help="run directory (default: the config's `out`, else runs/train)")
    p.add_argument("--resume", action="store_true", help="continue exactly from OUT/last.ckpt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--cv", type=int, metavar="K", help="K-fold cross-validation (KDEF: --cv 10); one run per "
                   "fold in OUT/fold<k>, mean and std in OUT/cv_metrics.json")

    def run(a):
        from ..config import load_config
        from ..train import cross_validate, train

        cfg = load_config(a.config, a.overrides)
        progress = False if a.no_progress else None
        if a.cv:
            cross_validate(cfg, a.cv, out=a.out, resume=a.resume, progress=progress)
        else:
            train(cfg, out=a.out, resume=a.resume, progress=progress)

    p.set_defaults(func=run)


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split or pose subset",
                       description="Evaluate a model file. Example: lanfer eval runs/rafdb_lan/best.safetensors "
                                   "--data configs/rafdb_lan.yaml --split test --subset val_raf_db_list_45.txt")
    p.add_argument("checkpoint", help="a lanfer model file (RUN_DIR/best.safetensors) or a shipped model's name")
    p.add_argument("--data", help="a YAML config whose data section to use, or a dataset name "
                                  "(default: the dataset recorded in the checkpoint)")
    p.add_argument("--root", help="dataset root (overrides the config's data.root)")
    p.add_argument("--split", default="test")
    p.add_argument("--subset", help="pose-list file (RAN format) restricting the split")
    add_set_flag(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="write metrics.json here (a folder or a .json path)")
    add_prior_tau_flag(p)
    p.add_argument("--tta", choices=("none", "flip"), default="none",
                   help="test-time augmentation: flip averages the logits of each face and its mirror image (none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(a):
        from ..evaluate import evaluate_checkpoint, format_metrics

        m = evaluate_checkpoint(a.checkpoint, data=a.data, root=a.root, split=a.split, subset=a.subset,
                                overrides=a.overrides, batch_size=a.batch_size, device=a.device, out=a.out,
                                progress=not a.no_progress, prior_tau=a.prior_tau, tta=a.tta)
        print(format_metrics(m, f"{a.checkpoint} on {m['dataset']['name']}/{a.split}"
                                + (f" subset {a.subset}" if a.subset else "")
                                + (" (flip TTA)" if a.tta == "flip" else "")))

    p.set_defaults(func=run)


def add_cluster(sub) -> None:
    p = sub.add_parser("cluster", help="fit the guidance map centres (K=2 per position) and write the file",
                       description="Example: lanfer cluster configs/rafdb_lan.yaml --set data.root=/data/RAF-DB "
                                   "--out runs/rafdb_guidance")
    p.add_argument("config")
    add_set_flag(p)
    p.add_argument("--out", help="folder for guidance.safetensors and its summary")

    def run(a):
        from ..cluster import cluster
        from ..config import load_config

        cluster(load_config(a.config, a.overrides), out=a.out)

    p.set_defaults(func=run)


def add_ablate(sub) -> None:
    p = sub.add_parser("ablate", help="train a grid of alpha x fusion (x seeds): Figure 7 and Table 6 with mean +/- std",
                       description="Example: lanfer ablate ferplus_lan --alpha 0,0.25,0.5,0.75,1 --fusion add,concat,"
                                   "average --seeds 3 --out runs/ablate. Finished cells are reused on a second call.")
    p.add_argument("config", help="a LAN config (file or packaged name); everything but alpha, fusion and seed is kept")
    p.add_argument("--alpha", type=float_list, default=[0.0, 0.25, 0.5, 0.75, 1.0], help="default 0,0.25,0.5,0.75,1")
    p.add_argument("--fusion", default="add,concat,average", help="comma-separated (default add,concat,average)")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds per cell: the config's seed, +1, ... (default 1)")
    p.add_argument("--out", required=True, help="folder for ablation.json/.txt and the plots (and the cells, "
                                                "unless --runs)")
    p.add_argument("--subset", action="append", default=[], metavar="NAME=LIST",
                   help="also evaluate every cell on the test split restricted to this list (repeatable), e.g. "
                        "pose45=$FERPLUS/pose_45_ferplus_list.txt")
    p.add_argument("--runs", metavar="DIR", help="folder of the cells (default OUT): grids that share cells, e.g. an "
                                                  "alpha curve and a fusion table, reuse them and keep their own tables")
    add_set_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(a):
        from ..analysis.ablate import format_ablation, run_ablation

        fusions = [f.strip() for f in a.fusion.split(",") if f.strip()]
        print(format_ablation(run_ablation(a.config, a.alpha, fusions, a.seeds, a.out, overrides=a.overrides,
                                           progress=not a.no_progress, runs=a.runs,
                                           subsets=named_files(a.subset))))

    p.set_defaults(func=run)

