"""Is a shipped face-identification backbone an identity network? Same- vs different-person similarity AUC
(issue 24).

``--backbone vggface2`` (default): HSE's VGGFace2 MobileNet; ``--backbone dlib``: dlib's face-recognition
ResNet (``create_model("dlib_resnet", pretrained="dlib")``, at dlib's 150 px by default), for which the row
``shipped_descriptor`` also scores dlib's own 128-d descriptor (the GAP times the shipped FC matrix).

Embeds faces of known identity with ``model.backbone`` and global average pooling (the 1024-d embedding the
original project uses; 256-d for dlib), scores every pair of pictures by cosine similarity and reports the ROC AUC of "same
person" against that score (``sklearn.metrics.roc_auc_score``; 0.5 is chance, 1.0 a perfect split) for:

* ``shipped``   ``create_model("mobilenet_vggface2", pretrained="vggface2")``: HSE's identity weights (or dlib's);
* ``shuffled``  the same tensors with each tensor's values randomly permuted (``--control-seeds`` seeds): the
  same architecture and per-tensor value distribution (scale, sign, bias levels), no learned structure;
* ``random``    the untrained architecture (PyTorch's default init, same seeds);
* ``pixels``    cosine of the normalised pixels at 32x32: what a template match gets without any network.

Shuffled and random weights without batch norm fade or saturate to a near-constant embedding by the last
blocks (every cosine ~1.0): a dead control, not merely an untrained one. So each network is also scored
``_rescaled``: every convolution's output standardised per channel on the set's own pictures (batch norm with
the batch's statistics; no labels). Each AUC is given for the cosine and ``centred`` (the cosine once the set's
mean embedding is removed: ReLU features share a large common component).

The faces are lanfer's synthetic renderer (:mod:`lanfer.data.synth`), the only faces with identity labels this
project has: ``--identities`` people x ``--images`` pictures each, every picture a different expression
(classes cycled from a random start, intensities drawn per picture), a random pose (yaw uniform in
+-``--max-yaw``, pitch and roll small) and a random scene (light, cluttered background, crop jitter, blur,
noise). A positive pair is the same person in two different expressions, poses and scenes. The sets:

* ``colour``: people as the renderer draws them (skin, hair colour and style, glasses, make-up differ);
* ``geometry_grey``: every person given the same appearance (skin, hair, eyes, glasses, skin texture and
  make-up of ``Identity()``'s defaults) and the pictures turned grey, so only the face's *shape* (head,
  jaw, eyes, brows, nose, mouth, ears) tells people apart: the cue an identity network is trained on, and
  the one a colour histogram cannot pick up;
* ``geometry_grey_neutral`` (not run by default): the same people, every picture neutral (only the person's
  resting face), so that pose (``--max-yaw``) and scene are the only nuisances: whether the network sees the
  renderer's shape differences at all, when expression does not move the face.

The 95% intervals resample identities (``--bootstrap`` times; pairs between two copies of one person are
dropped). Faces without identity labels cannot give same-person pairs: FERPlus (FER2013 crops) and the
face-api demo photos (22 faces in six group photos, presumably 22 people) are not used; see the issue-24
report. Example (5 CPU-minutes on one thread; 10 minutes of wall time on a busy 2-core machine)::

    python benchmarks/bench_identity.py --out results/port/identity_auc.json
    python benchmarks/bench_identity.py --backbone dlib --out results/port/identity_auc_dlib.json
"""
from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import cpu_model, machine_header
from sklearn.metrics import roc_auc_score

from lanfer.data.presets import EvalPreset
from lanfer.data.synth import (FaceParams, Identity, expression_names, render_face, sample_expression,
                               sample_identity, sample_scene)
from lanfer.model import create_model
from lanfer.pretrained import find_backbone
from lanfer.progress import progress_bar

SETS = ("colour", "geometry_grey", "geometry_grey_neutral")  # the last is not run by default
# the Identity fields that are appearance, not face shape (sex sets sideburns and neck width): in the
# geometry_grey sets every person takes Identity()'s values
APPEARANCE = ("sex", "skin", "lips", "brow_color", "hair_color", "hair_style", "hairline", "hair_volume",
              "iris_left", "iris_right", "pupil", "stubble", "blush", "freckles", "moles", "makeup", "glasses",
              "glasses_color", "rest", "texture_seed")
IDENTITY_OFFSET = 5000  # people no default lanfer set draws (expression sets start at 0, identity sets at 1000)


# ---------------------------------------------------------------------------------------------------------
# faces

def geometry_only(idt: Identity) -> Identity:
    """``idt``'s face shape with the appearance of ``Identity()`` (same skin, hair, eyes, no glasses)."""
    base = Identity()
    assert set(APPEARANCE) < {f.name for f in fields(Identity)}, "APPEARANCE names a field Identity lacks"
    return replace(idt, **{name: copy.deepcopy(getattr(base, name)) for name in APPEARANCE})


def render_people(kind: str, identities: int, images: int, size: int, seed: int, max_yaw: float,
                  ) -> tuple[list, np.ndarray]:
    """``identities x images`` pictures (PIL) and their person labels; each picture its own expression,
    pose and scene (neutral in the ``_neutral`` set), drawn from ``(seed, person)`` so that every set shows the
    same people in the same poses."""
    names = expression_names(7)
    pictures, labels = [], []
    bar = progress_bar(total=identities * images, desc=f"render {kind}", unit="img")
    for person in range(identities):
        idt = sample_identity(seed, IDENTITY_OFFSET + person)
        if kind.startswith("geometry_grey"):
            idt = geometry_only(idt)
        rng = np.random.default_rng([seed, IDENTITY_OFFSET + person])
        start = int(rng.integers(len(names)))
        for k in range(images):
            if kind.endswith("_neutral"):
                aus = dict(idt.rest)
            else:
                aus = sample_expression(names[(start + k) % len(names)], rng, idt.rest)
            scene = sample_scene(rng, "clutter")
            yaw = float(rng.uniform(-max_yaw, max_yaw))
            pitch = float(np.clip(rng.normal(0, 8), -20, 20))
            roll = float(np.clip(rng.normal(0, 6), -15, 15))
            img, _ = render_face(FaceParams(idt, aus, scene), yaw, pitch, roll, size)
            pictures.append(img)
            labels.append(person)
            bar.update(1)
    bar.close()
    return pictures, np.asarray(labels)


# ---------------------------------------------------------------------------------------------------------
# networks and embeddings

#: --backbone tag -> (model name, default picture side)
BACKBONE_MODELS = {"vggface2": ("mobilenet_vggface2", 160), "dlib": ("dlib_resnet", 150)}


def shipped_backbone(tag: str = "vggface2") -> torch.nn.Module:
    return create_model(BACKBONE_MODELS[tag][0], pretrained=tag).backbone.eval()


def descriptor_matrix(tag: str) -> torch.Tensor | None:
    """The shipped identity head on top of the GAP, where the file carries one (dlib's FC, (128, C))."""
    from safetensors.torch import load_file

    return load_file(str(find_backbone(tag).path)).get("descriptor.weight")


def shuffled(backbone: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of ``backbone`` with the values of every tensor randomly permuted within that tensor."""
    out = copy.deepcopy(backbone)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in out.state_dict().values():
            flat = t.reshape(-1)
            t.copy_(flat[torch.randperm(flat.numel(), generator=g)].view_as(t))
    return out.eval()


def random_init(seed: int, tag: str = "vggface2") -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(BACKBONE_MODELS[tag][0]).backbone.eval()


@torch.no_grad()
def rescaled(backbone: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A copy of ``backbone`` whose every convolution's output is standardised per channel on ``x`` (mean 0,
    std 1 before the activation, as batch norm with the batch's statistics would): shuffled or random weights
    otherwise saturate or fade to a near-constant embedding by the last blocks, a control that is dead rather
    than untrained. Labels are not used. One pass: a hook on each convolution, in the order the forward runs
    them, folds its output's statistics into its weights and hands the standardised output on (so every later
    convolution is measured on the already rescaled earlier ones, residual shortcuts included)."""
    out = copy.deepcopy(backbone)

    def standardise(conv, _inp, z):  # z: (N, C, H, W) pre-activation
        mean, std = z.mean(dim=(0, 2, 3)), z.std(dim=(0, 2, 3)).clamp_min(1e-12)  # (C,)
        conv.weight.div_(std.view(-1, 1, 1, 1))
        conv.bias.sub_(mean).div_(std)
        return (z - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    hooks = [m.register_forward_hook(standardise) for m in out.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        out(x)
    finally:
        for h in hooks:
            h.remove()
    return out.eval()


@torch.no_grad()
def embed(backbone: torch.nn.Module, x: torch.Tensor, batch: int = 50) -> torch.Tensor:
    """GAP of the last lattice: (N, 3, S, S) -> (N, 1024), L2-normalised."""
    parts = [backbone(x[i:i + batch]).mean(dim=(2, 3)) for i in range(0, len(x), batch)]  # (b, 1024) each
    return F.normalize(torch.cat(parts), dim=1)


def pixel_embedding(x: torch.Tensor, side: int = 32) -> torch.Tensor:
    """The normalised pixels at ``side`` x ``side``, each picture's mean removed, L2-normalised: (N, 3*side^2)."""
    small = F.adaptive_avg_pool2d(x, side).flatten(1)  # (N, 3*side*side)
    return F.normalize(small - small.mean(dim=1, keepdim=True), dim=1)


# ---------------------------------------------------------------------------------------------------------
# pairs and AUC

def pair_auc(sim: np.ndarray, labels: np.ndarray) -> tuple[float, int, int]:
    """ROC AUC of same-person against cosine similarity over all pairs i < j; also (positives, negatives)."""
    i, j = np.triu_indices(len(labels), k=1)
    same = labels[i] == labels[j]
    return float(roc_auc_score(same, sim[i, j])), int(same.sum()), int((~same).sum())


def bootstrap_auc(sim: np.ndarray, labels: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    """95% interval of :func:`pair_auc` resampling people with replacement. Two drawn copies of one person
    are kept apart: pairs within a copy are positives, pairs across copies of the same person are dropped."""
    rng = np.random.default_rng(seed)
    people = np.unique(labels)
    members = [np.flatnonzero(labels == p) for p in people]
    aucs = []
    for _ in range(n):
        draw = rng.choice(len(people), len(people), replace=True)
        if len(np.unique(draw)) < 2:  # one person drawn every time (tiny sets): no different-person pair
            continue
        idx = np.concatenate([members[d] for d in draw])
        copy_id = np.repeat(np.arange(len(draw)), [len(members[d]) for d in draw])
        person = labels[idx]
        i, j = np.triu_indices(len(idx), k=1)
        keep = (copy_id[i] == copy_id[j]) | (person[i] != person[j])
        i, j = i[keep], j[keep]
        aucs.append(roc_auc_score(copy_id[i] == copy_id[j], sim[idx[i], idx[j]]))
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return float(lo), float(hi)


def score(emb: torch.Tensor, labels: np.ndarray, n_boot: int, seed: int) -> dict:
    """AUC of the cosine (``cosine``) and of the cosine once the set's mean embedding is removed
    (``centred``: ReLU features share a large common component; removing it uses no labels)."""
    row: dict = {}
    for key, e in (("cosine", emb), ("centred", F.normalize(emb - emb.mean(dim=0), dim=1))):
        sim = (e @ e.T).numpy()  # (N, N)
        row[key], row["positives"], row["negatives"] = pair_auc(sim, labels)
        row[key] = round(row[key], 4)
        if n_boot:
            row[f"{key}_95ci"] = [round(v, 4) for v in bootstrap_auc(sim, labels, n_boot, seed)]
        if key == "cosine":
            i, j = np.triu_indices(len(labels), k=1)
            same = labels[i] == labels[j]
            row["mean_cos_same"] = round(float(sim[i, j][same].mean()), 4)
            row["mean_cos_different"] = round(float(sim[i, j][~same].mean()), 4)
    return row


def _ci(r: dict, key: str) -> str:
    return "{:.3f}-{:.3f}".format(*r[f"{key}_95ci"]) if f"{key}_95ci" in r else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identities", type=int, default=40, help="people per set (default 40)")
    ap.add_argument("--images", type=int, default=5, help="pictures per person (default 5)")
    ap.add_argument("--backbone", choices=sorted(BACKBONE_MODELS), default="vggface2",
                    help="the shipped backbone's tag (default vggface2: HSE's MobileNet; dlib: dlib's ResNet)")
    ap.add_argument("--size", type=int, default=None, help="picture side in px (default 160 for vggface2: a 5x5 "
                    "lattice; 150 for dlib: its own input, a 2x2 lattice)")
    ap.add_argument("--max-yaw", type=float, default=30.0, help="yaw uniform in +-this, degrees (default 30)")
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS[:2]))
    ap.add_argument("--control-seeds", type=int, default=3, help="shuffled and random-init networks (default 3 each)")
    ap.add_argument("--bootstrap", type=int, default=200, help="identity resamples for the 95%% interval (0: none)")
    ap.add_argument("--seed", type=int, default=0, help="the people, expressions, poses and scenes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", help="write the record as JSON here")
    a = ap.parse_args(argv)
    if a.identities < 2 or a.images < 2:
        ap.error("need at least 2 identities and 2 images per identity to have both kinds of pair")
    torch.set_num_threads(a.threads)
    a.size = a.size or BACKBONE_MODELS[a.backbone][1]
    normalize = find_backbone(a.backbone).normalize
    print(machine_header(), flush=True)
    t0 = time.perf_counter()

    ship = shipped_backbone(a.backbone)
    head = descriptor_matrix(a.backbone)
    nets = {"shipped": ship}
    nets.update({f"shuffled_seed{s}": shuffled(ship, s) for s in range(a.control_seeds)})
    nets.update({f"random_seed{s}": random_init(s, a.backbone) for s in range(a.control_seeds)})
    families = ("shuffled", "random", "shuffled_rescaled", "random_rescaled")

    results: dict[str, dict] = {}
    for kind in a.sets:
        pictures, labels = render_people(kind, a.identities, a.images, a.size, a.seed, a.max_yaw)
        preset = EvalPreset(a.size, normalize, "grayscale" if kind.startswith("geometry_grey") else "rgb")
        x = torch.stack([preset(p) for p in pictures])  # (N, 3, S, S)
        rows = {}
        for name, net in nets.items():
            rows[name] = score(embed(net, x), labels, a.bootstrap, a.seed)
            base, _, seed = name.partition("_seed")
            rows[f"{base}_rescaled" + (f"_seed{seed}" if seed else "")] = score(
                embed(rescaled(net, x), x), labels, a.bootstrap, a.seed)
        if head is not None:  # the network's own identity embedding: GAP @ FC.T, L2-normalised
            rows["shipped_descriptor"] = score(F.normalize(embed(ship, x) @ head.float().T, dim=1), labels,
                                               a.bootstrap, a.seed)
        rows["pixels"] = score(pixel_embedding(x), labels, a.bootstrap, a.seed)
        for family in families:  # the spread over seeds
            members = [r for n, r in rows.items() if n.rpartition("_seed")[0] == family]
            rows[family] = {f"{key}_{stat}": round(float(fn([r[key] for r in members])), 4)
                            for key in ("cosine", "centred") for stat, fn in (("mean", np.mean), ("min", np.min),
                                                                              ("max", np.max))}
        results[kind] = rows
        print(f"\n{kind}: {a.identities} people x {a.images} pictures at {a.size} px, "
              f"{rows['shipped']['positives']} same-person and {rows['shipped']['negatives']} different-person pairs")
        print(f"{'network':<26} {'AUC':>6}  {'95% CI':<11}  {'centred':>7}  {'95% CI':<11}  "
              f"{'cos same':>8} {'cos diff':>8}")
        for name, r in rows.items():
            if "cosine" in r:
                print(f"{name:<26} {r['cosine']:>6.3f}  {_ci(r, 'cosine'):<11}  {r['centred']:>7.3f}  "
                      f"{_ci(r, 'centred'):<11}  {r['mean_cos_same']:>8.4f} {r['mean_cos_different']:>8.4f}")
        for family in families:
            r = rows[family]
            print(f"{family + ' (seeds)':<26} {r['cosine_mean']:>6.3f}  {r['cosine_min']:.3f}-{r['cosine_max']:.3f}  "
                  f"{r['centred_mean']:>7.3f}  {r['centred_min']:.3f}-{r['centred_max']:.3f}")

    wall = time.perf_counter() - t0
    print(f"\nwall {wall:.0f} s")
    if a.out:
        args = sys.argv[1:] if argv is None else argv
        record = {
            "command": "python " + " ".join(shlex.quote(s) for s in [sys.argv[0], *args]),
            "backbone": f"{find_backbone(a.backbone).name} (pretrained={a.backbone!r}, normalize={normalize!r})",
            "cpu": cpu_model(), "torch": torch.__version__, "threads": a.threads, "wall_s": round(wall, 1),
            "embedding": "global average pool of model.backbone(x), L2-normalised; score = cosine ('centred': "
                         "after removing the set's mean embedding)",
            "rescaled": "each convolution's output standardised per channel on the set's pictures (no labels)",
            "faces": {"source": "lanfer.data.synth", "identities": a.identities, "images_per_identity": a.images,
                      "size": a.size, "max_yaw": a.max_yaw, "seed": a.seed, "identity_offset": IDENTITY_OFFSET,
                      "geometry_grey_shared_fields": list(APPEARANCE)},
            "control_seeds": a.control_seeds, "bootstrap": a.bootstrap,
            "results": results,
        }
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(record, indent=1) + "\n")
        print(f"record: {a.out}")
    print("same- vs different-person cosine AUC (centred): " + "; ".join(  # last: run_all.py's key figure
        f"{kind} shipped {r['shipped']['cosine']:.3f} ({r['shipped']['centred']:.3f}), controls "
        f"{min(r[f]['cosine_mean'] for f in families):.3f}-{max(r[f]['cosine_mean'] for f in families):.3f}, "
        f"pixels {r['pixels']['cosine']:.3f}" for kind, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
