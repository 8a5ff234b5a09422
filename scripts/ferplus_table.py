"""Print the README's FERPlus tables from a results folder (run folders or their committed records).

    python scripts/ferplus_table.py results/ferplus_cpu

Reads ``stage1/`` and ``{resnet18,lan}_s<seed>/`` (``metrics.json``: test; ``metrics.jsonl``: the best
validation epoch and the training speed; ``pose30|pose45/metrics.json``: the Pose-FERPlus lists), and prints
the per-seed table and mean +/- std (sample std over seeds) for each model.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

COLS = [("val", "val"), ("test", "test"), ("test_mca", "test mean class"), ("pose30", "Pose-30"),
        ("pose45", "Pose-45")]


def record(run: Path) -> dict:
    out = {}
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    best = max(rows, key=lambda r: r.get("val_accuracy", -1))
    out["val"] = best.get("val_accuracy")
    out["img_s"] = statistics.mean(r["images_per_s"] for r in rows)
    out["train_s"] = sum(r["train_images"] / r["images_per_s"] for r in rows)
    m = json.loads((run / "metrics.json").read_text())
    out["test"], out["test_mca"] = m["accuracy"], m["mean_class_accuracy"]
    for p in ("pose30", "pose45"):
        f = run / p / "metrics.json"
        out[p] = json.loads(f.read_text())["accuracy"] if f.is_file() else None
    return out


def fmt(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def main(root: str) -> None:
    root = Path(root)
    head = "| run | " + " | ".join(c[1] for c in COLS) + " | train img/s | train wall |"
    print(head)
    print("|" + "---|" * (len(COLS) + 3))
    groups: dict[str, list[dict]] = {}
    for run in sorted(p for p in root.iterdir() if (p / "metrics.json").is_file()):
        r = record(run)
        groups.setdefault(run.name.rsplit("_s", 1)[0] if "_s" in run.name else run.name, []).append(r)
        print(f"| {run.name} | " + " | ".join(fmt(r[k]) for k, _ in COLS)
              + f" | {r['img_s']:.0f} | {r['train_s'] / 60:.0f} min |")
    print()
    print("| model | seeds | " + " | ".join(c[1] for c in COLS) + " |")
    print("|" + "---|" * (len(COLS) + 2))
    for name, rs in groups.items():
        if len(rs) < 2:
            continue
        cells = []
        for k, _ in COLS:
            vals = [r[k] for r in rs if r[k] is not None]
            cells.append(f"{100 * statistics.mean(vals):.2f} +/- {100 * statistics.stdev(vals):.2f}" if len(vals) > 1
                         else "-")
        print(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/ferplus_cpu")
