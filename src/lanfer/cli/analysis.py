"""``lanfer`` commands: look inside models and compare runs."""
from __future__ import annotations

from ._args import add_detector_flag, named_files


def add_cam(sub) -> None:
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
    add_detector_flag(p)

    def run(a):
        from pathlib import Path

        from ..analysis.cam import run_cam
        from ..pretrained import SHIPPED

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
        for path in run_cam(images, a.out, models or None, a.class_name, a.guidance, labels, a.detect,
                            a.detector):
            print(f"wrote {path}")

    p.set_defaults(func=run)


def add_report(sub) -> None:
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
        from ..analysis.report import write_report

        path = write_report(a.runs, a.out, compare=a.compare, guidance=a.guidance, root=a.root,
                            per_class=a.samples, title=a.title)
        print(f"wrote {path}")

    p.set_defaults(func=run)


def add_compare(sub) -> None:
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
        from ..analysis.compare import compare_runs, format_compare
        from ..config import ConfigError

        runs_a, runs_b = list(a.a), list(a.b)
        if a.runs:
            if runs_a or runs_b or len(a.runs) != 2:
                raise ConfigError("give two runs (RUN_A RUN_B) or groups with --a ... --b ..., not both")
            runs_a, runs_b = [a.runs[0]], [a.runs[1]]
        if not runs_a or not runs_b:
            raise ConfigError("nothing to compare: give RUN_A RUN_B, or --a RUN... --b RUN...")
        print(format_compare(compare_runs(runs_a, runs_b, out=a.out, subsets=named_files(a.subset), data=a.data, root=a.root,
                                          split=a.split, n_boot=a.bootstrap, device=a.device)))

    p.set_defaults(func=run)

