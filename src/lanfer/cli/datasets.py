"""``lanfer`` commands: prepare, list and inspect datasets; render the synthetic one."""
from __future__ import annotations

from ._args import add_set_flag, float_list


def add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="decode, crop and resize a dataset once into a fast memory-mapped cache",
                       description="Example: lanfer prepare configs/affectnet_lan.yaml --set data.root=/data/AffectNet "
                                   "--out /data/cache/affectnet-224; then train with --set data.name=prepared "
                                   "--set data.root=/data/cache/affectnet-224")
    p.add_argument("config", help="YAML config whose data section names the dataset")
    add_set_flag(p)
    p.add_argument("--out", help="cache folder (default prepared/<dataset>-<image_size>)")
    p.add_argument("--splits", help="comma-separated splits (default: the config's train/val/test; all for KDEF)")
    p.add_argument("--workers", type=int, help="decoding processes (default data.num_workers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(a):
        from ..data.prepare import prepare, summarize

        print(summarize(prepare(a.config, out=a.out, splits=a.splits, overrides=a.overrides,
                                num_workers=a.workers, progress=not a.no_progress)))

    p.set_defaults(func=run)


def add_datasets(sub) -> None:
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
        from ..data.inventory import datasets_text

        print(datasets_text(a.name, a.root, a.splits, a.subset, a.option))

    p.set_defaults(func=run)


def add_pose_subsets(sub) -> None:
    p = sub.add_parser("pose-subsets", help="write RAN-style lists of the test images whose |yaw| exceeds thresholds",
                       description="Example: lanfer pose-subsets configs/rafdb_lan.yaml --thresholds 30,45 --out lists/ "
                                   "--set data.root=/data/RAF-DB/basic. Yaw comes from the dataset's metadata when "
                                   "it has one (KDEF, synth), else from detected landmarks (needs lanfer[faces]).")
    p.add_argument("config", metavar="DATASET_CONFIG", help="YAML config whose data section names the dataset")
    p.add_argument("--thresholds", default="30,45", type=float_list, help="yaw thresholds in degrees (default 30,45)")
    p.add_argument("--out", required=True, help="folder for lanfer_pose_<t>_<name>_list.txt and pose_yaw_<name>.csv")
    p.add_argument("--split", default="test", help="dataset split (default test)")
    p.add_argument("--name", help="<name> in the file names (default: the dataset name)")
    # MTCNN, not the default BlazeFace: the yaw is fitted to five landmarks and BlazeFace places its mouth
    # corners from its eyes (lanfer.pose_subsets.POSE_DETECTOR says more)
    p.add_argument("--detector", default="mtcnn",
                   help="face detector for images without a metadata yaw (default mtcnn, whose five landmarks are "
                        "all detected: BlazeFace's mouth corners follow its eyes and carry no yaw of their own)")
    p.add_argument("--device", default="cpu", help="device for the detector (cpu, cuda)")
    p.add_argument("--no-meta-yaw", action="store_true", help="estimate every yaw from landmarks, ignoring metadata")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set_flag(p)

    def run(a):
        from ..pose_subsets import run_pose_subsets

        print(run_pose_subsets(a.config, a.out, a.thresholds, split=a.split, overrides=a.overrides,
                               detector=a.detector, device=a.device, use_meta_yaw=not a.no_meta_yaw,
                               name=a.name, progress=not a.no_progress).summary())

    p.set_defaults(func=run)


def add_synth(sub) -> None:
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
        from ..data.synth import generate

        root = generate(a.out, identities=a.identities, seed=a.seed, views=a.views, image_size=a.size,
                        sessions=a.sessions, expressions=a.expressions, images_per_identity=a.images_per_identity,
                        mode=a.mode, identity_offset=a.identity_offset, background=a.background,
                        workers=a.workers, progress=True)
        print(f"wrote {root} ({root / 'metadata.csv'})")

    p.set_defaults(func=run)

