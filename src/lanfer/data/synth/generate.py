"""Writing synthetic datasets to disk: KDEF's layout, a continuous-pose layout, an identity image folder.

Every picture has its own random stream, derived from ``(seed, identity, session, expression, view)``,
so the output does not depend on the number of worker processes or the order they finish in: the same
arguments give the same bytes (JPEG quality and subsampling are fixed; nothing records a time).
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..base import DataError
from ..kdef import KDEF_VIEWS
from .expressions import AUS, KDEF_CODE, au_intensity, expression_names, facs_code, sample_expression
from .face import LANDMARKS, build_face
from .identity import GLASSES_STYLES, Identity, sample_identity
from .render import pixels_per_unit, render, sample_scene
from ...io import atomic_write

SESSIONS = ("A", "B")
JPEG_QUALITY = 92
FORMAT_VERSION = 1

# tags that keep the random streams of different uses apart
_EXPR, _SCENE, _SESSION, _POSE, _SPLIT = 1, 3, 4, 5, 6


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def metadata_columns() -> list[str]:
    """The columns of ``metadata.csv``, in order."""
    cols = ["path", "split", "subject", "session", "sex", "identity", "expression", "label", "kdef_code",
            "view", "yaw", "pitch", "roll"]
    cols += [f"au{a}" for a in AUS] + ["facs"]
    for name in LANDMARKS:
        cols += [f"{name}_x", f"{name}_y", f"{name}_visible"]
    cols += ["hair", "glasses", "light_x", "light_y", "light_z", "image_size", "seed"]
    return cols


def nearest_view(yaw: float) -> str:
    """The KDEF view code nearest to ``yaw`` (used to group continuous poses by view)."""
    return min(KDEF_VIEWS, key=lambda v: abs(KDEF_VIEWS[v] - yaw))


@dataclass
class _Job:
    """One face (identity, session, expression) drawn in one or more poses."""

    identity: int  # global index (offset included)
    session: int
    expression: str
    label: int
    poses: list[tuple[str, float, float, float, str]]  # (view code, yaw, pitch, roll, relative path)
    split: str
    subject: str
    session_label: str = "A"  # KDEF's A/B; "A" for layouts without sessions
    accessories: int = 0  # 1: as the person came to KDEF's session B (glasses may differ)


@dataclass
class _Settings:
    seed: int
    image_size: int
    background: str
    quality: int


def _session_identity(idt: Identity, seed: int, session: int) -> Identity:
    """The person as they came to session ``session``: sometimes with, sometimes without glasses."""
    if session == 0:
        return idt
    rng = _rng(seed, _SESSION, idt.index, session)
    if rng.random() < 0.2:
        return replace(idt, glasses="" if idt.glasses else str(GLASSES_STYLES[int(rng.integers(2))]))
    return idt


def _encode(img, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False)
    return buf.getvalue()


def _run_job(args: tuple[_Job, _Settings, str]) -> list[dict[str, Any]]:
    job, st, out = args
    idt = _session_identity(sample_identity(st.seed, job.identity), st.seed, job.accessories)
    e_idx = expression_names(8).index(job.expression)
    # one expression per (person, session, expression), seen by every camera, as in KDEF's sessions
    aus = sample_expression(job.expression, _rng(st.seed, _EXPR, job.identity, job.session, e_idx), idt.rest)
    model = build_face(idt, aus, pixels_per_unit(st.image_size))
    rows = []
    for v_idx, (view, yaw, pitch, roll, rel) in enumerate(job.poses):
        scene = sample_scene(_rng(st.seed, _SCENE, job.identity, job.session, e_idx, v_idx), st.background)
        img, marks = render(model, yaw, pitch, roll, st.image_size, scene)
        path = Path(out) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_encode(img, st.quality))
        light = np.asarray(scene.light) / np.linalg.norm(scene.light)
        row: dict[str, Any] = {
            "path": rel, "split": job.split, "subject": job.subject, "session": job.session_label,
            "sex": idt.sex, "identity": job.identity, "expression": job.expression, "label": job.label,
            "kdef_code": KDEF_CODE.get(job.expression, ""), "view": view,
            "yaw": round(float(yaw), 3), "pitch": round(float(pitch), 3), "roll": round(float(roll), 3),
        }
        for a in AUS:
            row[f"au{a}"] = round(au_intensity(aus, a), 4)
        row["facs"] = facs_code(aus)
        for name in LANDMARKS:
            x, y, vis = marks[name]
            row[f"{name}_x"] = round(x, 2)
            row[f"{name}_y"] = round(y, 2)
            row[f"{name}_visible"] = int(vis)
        row.update({"hair": idt.hair_style, "glasses": idt.glasses or "none", "light_x": round(float(light[0]), 3),
                    "light_y": round(float(light[1]), 3), "light_z": round(float(light[2]), 3),
                    "image_size": st.image_size, "seed": st.seed})
        rows.append(row)
    return rows


def _identity_splits(indices: list[int], seed: int, test_fraction: float) -> dict[int, str]:
    """train/val/test per identity, deterministic in ``seed``: test ~``test_fraction`` (at least one when
    there are two or more people), val ~10% once there are five or more, the rest train."""
    n = len(indices)
    order = [indices[i] for i in _rng(seed, _SPLIT, n).permutation(n)]
    n_test = max(1, int(round(test_fraction * n))) if n >= 2 else 0
    n_val = max(1, int(round(0.1 * n))) if n >= 5 else 0
    out = {}
    for k, i in enumerate(order):
        out[i] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    return out


def _random_pose(rng: np.random.Generator) -> tuple[float, float, float]:
    yaw = float(rng.uniform(-90, 90))
    pitch = float(np.clip(rng.normal(0, 8), -25, 25))
    roll = float(np.clip(rng.normal(0, 6), -20, 20))
    return yaw, pitch, roll


def plan(identities: int = 4, seed: int = 1, views: str = "kdef", sessions: int = 2, expressions: int = 7,
         images_per_identity: int | None = None, mode: str = "expression", identity_offset: int | None = None,
         test_fraction: float = 0.2) -> list[_Job]:
    """The list of faces and poses :func:`generate` will draw (no pixels): useful to count files."""
    if identities < 1:
        raise DataError(f"identities={identities} must be at least 1")
    if mode not in ("expression", "identity"):
        raise DataError(f"mode={mode!r} must be 'expression' or 'identity'")
    if views not in ("kdef", "continuous"):
        raise DataError(f"views={views!r} must be 'kdef' or 'continuous'")
    if expressions not in (7, 8):
        raise DataError(f"expressions={expressions} must be 7 (KDEF's classes) or 8 (adds contempt)")
    offset = (1000 if mode == "identity" else 0) if identity_offset is None else int(identity_offset)
    names = expression_names(expressions)
    people = list(range(offset, offset + identities))
    jobs: list[_Job] = []
    if mode == "identity":
        n_img = 20 if images_per_identity is None else int(images_per_identity)
        if n_img < 2:
            raise DataError(f"images_per_identity={n_img}: identity mode needs at least 2 (one for test)")
        n_test = max(1, int(round(test_fraction * n_img)))
        all_names = expression_names(8 if expressions == 8 else 7)
        for i in people:
            rng = _rng(seed, _POSE, i)
            start = int(rng.integers(len(all_names)))
            name = f"id{i:05d}"
            # two pictures (two poses and scenes) per face built: identity, not expression, is the target here
            for first in range(0, n_img, 2):
                expr = all_names[(start + first // 2) % len(all_names)]
                by_split: dict[str, tuple[int, list]] = {}
                for n in range(first, min(first + 2, n_img)):
                    split = "test" if n >= n_img - n_test else "train"
                    yaw, pitch, roll = _random_pose(rng)
                    pose = (nearest_view(yaw), yaw, pitch, roll, f"{split}/{name}/{name}_{n:04d}.jpg")
                    by_split.setdefault(split, (n, []))[1].append(pose)
                for split, (n0, poses) in by_split.items():
                    # ``session`` = first picture number: every face is a fresh expression
                    jobs.append(_Job(i, n0, expr, all_names.index(expr), poses, split, name))
        return jobs
    splits = _identity_splits(people, seed, test_fraction)
    if views == "kdef":
        if expressions != 7:
            raise DataError("KDEF naming has no code for contempt: use expressions=7 with views='kdef', or "
                            "views='continuous' for an 8-class set")
        if not 1 <= sessions <= 2:
            raise DataError(f"sessions={sessions}: KDEF has sessions A and B (1 or 2)")
        if images_per_identity is not None:
            raise DataError("images_per_identity applies to views='continuous' and mode='identity'; the KDEF "
                            "layout always has 7 expressions x 5 views per session")
        counts = {"F": 0, "M": 0}
        for i in people:
            sex = sample_identity(seed, i).sex
            counts[sex] += 1
            if counts[sex] > 99:
                raise DataError(f"identities={identities}: KDEF names hold 99 people per sex; use "
                                "views='continuous' for larger sets")
            subject = f"{sex}{counts[sex]:02d}"
            for ses in range(sessions):
                for name in names:
                    code = KDEF_CODE[name]
                    folder = f"{SESSIONS[ses]}{subject}"
                    poses = []
                    rng = _rng(seed, _POSE, i, ses, names.index(name))
                    for view, yaw in KDEF_VIEWS.items():
                        pitch = float(np.clip(rng.normal(0, 2), -5, 5))
                        roll = float(np.clip(rng.normal(0, 2), -5, 5))
                        poses.append((view, float(yaw), pitch, roll, f"KDEF/{folder}/{folder}{code}{view}.JPG"))
                    jobs.append(_Job(i, ses, name, names.index(name), poses, splits[i], subject, SESSIONS[ses], ses))
        return jobs
    n_img = len(names) * 5 if images_per_identity is None else int(images_per_identity)
    if n_img < 1:
        raise DataError(f"images_per_identity={n_img} must be at least 1")
    for i in people:
        rng = _rng(seed, _POSE, i)
        start = int(rng.integers(len(names)))
        for n in range(n_img):
            name = names[(start + n) % len(names)]
            yaw, pitch, roll = _random_pose(rng)
            rel = f"images/id{i:05d}_{n:04d}.jpg"
            # each picture is its own face (session = picture number): a fresh expression every time
            jobs.append(_Job(i, n, name, names.index(name), [(nearest_view(yaw), yaw, pitch, roll, rel)],
                             splits[i], f"id{i:05d}"))
    return jobs


_LAYOUT = ("KDEF", "images", "train", "test", "metadata.csv", "synth.json")


def _prepare_folder(out: Path) -> None:
    """Use ``out`` if it is new or empty; replace a set this module wrote there before (its ``synth.json``
    says so, even after an interrupted run); refuse anything else rather than mix or delete files."""
    if out.exists() and not out.is_dir():
        raise DataError(f"synth: {str(out)!r} is a file; --out must be a folder")
    if out.is_dir() and any(out.iterdir()):
        marker = out / "synth.json"
        try:
            ours = json.loads(marker.read_text()).get("generator") == "lanfer synth"
        except (OSError, ValueError):
            ours = False
        others = sorted(p.name for p in out.iterdir() if p.name not in _LAYOUT)
        if not ours or others:
            raise DataError(f"synth: {str(out)!r} is not empty and does not hold only a previous synthetic set "
                            f"({', '.join(others[:3]) or 'no synth.json'}); choose a new or empty folder")
        for name in _LAYOUT:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate(out: str | Path, identities: int = 4, seed: int = 1, views: str = "kdef", image_size: int = 256,
             sessions: int = 2, expressions: int = 7, images_per_identity: int | None = None,
             mode: str = "expression", identity_offset: int | None = None, background: str = "clutter",
             test_fraction: float = 0.2, workers: int | None = None, quality: int = JPEG_QUALITY,
             progress: bool = False) -> Path:
    """Render a synthetic facial-expression dataset into ``out`` and return ``out`` (the dataset root).

    Layouts (``metadata.csv`` and ``synth.json`` always sit in ``out``):

    * ``mode="expression", views="kdef"``: KDEF's names, ``out/KDEF/AF01/AF01ANHL.JPG`` -- session A/B,
      sex F/M, a two-digit number per sex, expression AF AN DI HA NE SA SU, view FL HL S HR FR (yaw -90,
      -45, 0, +45, +90) -- ``identities x sessions x 7 x 5`` pictures, readable by the ``kdef`` dataset.
    * ``mode="expression", views="continuous"``: ``out/images/id00003_0012.jpg``, random poses (yaw
      uniform in [-90, 90], pitch ~N(0, 8), roll ~N(0, 6) degrees), ``images_per_identity`` pictures per
      person (default 5 per class), classes cycled; ``expressions=8`` adds contempt. Read it with the
      ``synth`` dataset.
    * ``mode="identity"``: an image folder ``out/{train,test}/id01000/*.jpg`` for face-identity
      pretraining, ``images_per_identity`` per person (default 20, the last ``test_fraction`` of them in
      test), random expressions (one per two pictures) and poses. People are numbered from
      ``identity_offset`` (default 1000 in
      this mode, 0 otherwise); a person is drawn from ``(seed, number)``, so with the defaults the
      identity set's people are not those of an expression set of up to 1000 people.

    Pictures are square ``image_size`` px face crops, as if already detected and aligned (KDEF's own
    pictures are 562x762 portraits; the ``kdef`` reader leaves square pictures uncropped). Expression
    sets assign each *identity* to ``train``/``val``/``test`` in the ``split`` column (deterministic in
    ``seed``). ``workers`` processes render in parallel (default: all CPUs); the bytes do not depend on it.
    """
    jobs = plan(identities, seed, views, sessions, expressions, images_per_identity, mode, identity_offset,
                test_fraction)
    if image_size < 32:
        raise DataError(f"image_size={image_size}: use at least 32 px")
    if background not in ("clutter", "plain"):
        raise DataError(f"background={background!r} must be 'clutter' or 'plain'")
    out = Path(out)
    _prepare_folder(out)
    (out / "synth.json").write_text(json.dumps({"generator": "lanfer synth", "complete": False}) + "\n")
    settings = _Settings(int(seed), int(image_size), background, int(quality))
    tasks = [(job, settings, str(out)) for job in jobs]
    n_workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    n_workers = min(n_workers, len(tasks))
    bar = None
    if progress:
        from ...progress import progress_bar
        bar = progress_bar(total=sum(len(j.poses) for j in jobs), desc="lanfer synth", unit="img")
    results: list[list[dict]] = []
    if n_workers <= 1:
        for t in tasks:
            results.append(_run_job(t))
            if bar is not None:
                bar.update(len(t[0].poses))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
        # a chunk per person keeps each worker's cache of that person's head warm
        per_person = max(1, len(tasks) // identities)
        with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
            for rows in pool.map(_run_job, tasks, chunksize=max(1, min(per_person, len(tasks) // n_workers))):
                results.append(rows)
                if bar is not None:
                    bar.update(len(rows))
    if bar is not None:
        bar.close()
    rows = sorted((r for rs in results for r in rs), key=lambda r: r["path"])
    cols = metadata_columns()
    with open(out / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    classes = list(expression_names(8 if (expressions == 8) else 7))
    info = {
        "generator": "lanfer synth", "format_version": FORMAT_VERSION, "mode": mode, "views": views,
        "seed": int(seed), "identities": int(identities), "identity_offset": jobs[0].identity if jobs else 0,
        "sessions": int(sessions) if views == "kdef" and mode == "expression" else None,
        "images_per_identity": images_per_identity, "image_size": int(image_size), "background": background,
        "classes": classes, "images": len(rows), "complete": True,
        "conventions": {
            "yaw": "degrees; positive = head turned to the subject's left (nose toward image-right); "
                   "FR = +90 shows the subject's right cheek",
            "pitch": "degrees; positive = looking up", "roll": "degrees; positive = clockwise on screen",
            "landmarks": "pixels (x right, y down); left/right = image-left/right of a frontal face "
                         "(left_eye is the subject's RIGHT eye), as MTCNN; *_visible = not occluded and "
                         "inside the picture",
            "au": "intensity in [0, 1] (the larger of the two sides); facs = FACS code with A-E intensity "
                  "letters and L/R for unilateral AUs (subject's side)",
        },
    }
    # the completion marker: atomic, so an interrupted run is never read as a finished dataset
    atomic_write(out / "synth.json", lambda t: t.write_text(json.dumps(info, indent=2) + "\n"))
    return out
