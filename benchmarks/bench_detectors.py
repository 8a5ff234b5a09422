"""Face detectors side by side: recall on the six face-api demo photos (22 faces marked by eye) and the time per
640x480 frame, for BlazeFace (the default) and MTCNN (``--detector mtcnn``), same run, same machine.

    python benchmarks/bench_detectors.py [--reps 20] [--threads 2] [--out runs/bench/bench_detectors.json]

Recall: a marked face counts as found when the centre marked for it lies inside a detected box (each box
finds at most one face); a box containing no marked centre is a false detection. The centres were read off
the photos by eye, with both detectors' boxes drawn over them (sample4's dress pattern, which MTCNN takes for
a face, is not a face). Speed: each detector on 640x480 frames cut from the six photos (scaled to cover
640x480, the middle cut out; 3-5 faces of ~60-90 px each), one frame per call, the median over ``--reps``
calls a frame after one warm-up call, with torch limited to ``--threads`` threads. The photos come from
``npm pack @vladmandic/face-api@1.7.15`` (tests/conftest.py fetches them into ~/.cache/lanfer/face-api).
Landmarks: on the faces both find, the distance of BlazeFace's five points from MTCNN's, over the
inter-ocular distance.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import machine_header
from lanfer.faces import get_detector

#: face centres (x, y) in the 1920 px photos, marked by eye: 22 faces
FACES = {
    "sample1.jpg": [(504, 477), (934, 542), (1580, 327)],
    "sample2.jpg": [(414, 291), (977, 354), (1538, 280)],
    "sample3.jpg": [(690, 461), (1171, 351), (1593, 432)],
    "sample4.jpg": [(343, 330), (744, 180), (1068, 299), (1347, 271)],
    "sample5.jpg": [(464, 1017), (682, 542), (868, 220), (1204, 316), (1505, 527)],
    "sample6.jpg": [(364, 624), (761, 479), (1268, 450), (1589, 405)],
}
#: name -> (registered detector, its options): the defaults lanfer predict uses, and BlazeFace with tiles
DETECTORS = {
    "blazeface": ("blazeface", {}),
    "blazeface tiles=auto": ("blazeface", {"tiles": "auto"}),
    "mtcnn": ("mtcnn", {}),
}


def photo_dir() -> Path:
    return Path(os.environ.get("LANFER_CACHE") or Path.home() / ".cache" / "lanfer") / "face-api"


def match(faces_found, marked) -> tuple[list, int]:
    """Each marked face's box (or None) and the number of boxes that found no marked face; each box finds at
    most one face (the smallest box holding the marked centre)."""
    free = list(range(len(faces_found)))
    out = []
    for x, y in marked:
        inside = [i for i in free if faces_found[i].box[0] <= x <= faces_found[i].box[2]
                  and faces_found[i].box[1] <= y <= faces_found[i].box[3]]
        best = min(inside, key=lambda i: faces_found[i].area) if inside else None
        if best is not None:
            free.remove(best)
        out.append(faces_found[best] if best is not None else None)
    return out, len(free)


def landmark_gap(a, b) -> np.ndarray:
    """|a - b| of the five landmarks of two detections of one face, over b's inter-ocular distance: (5,)."""
    iod = np.linalg.norm(b.landmarks[1] - b.landmarks[0])
    return np.linalg.norm(a.landmarks - b.landmarks, axis=1) / iod


def frame_640x480(image: np.ndarray) -> np.ndarray:
    """The photo scaled to cover 640x480, its middle cut out."""
    h, w = image.shape[:2]
    s = max(640 / w, 480 / h)
    small = np.asarray(Image.fromarray(image).resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR))
    top, left = (small.shape[0] - 480) // 2, (small.shape[1] - 640) // 2
    return np.ascontiguousarray(small[top:top + 480, left:left + 640])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=20, help="timed calls per 640x480 frame")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--only", nargs="*", default=list(DETECTORS), choices=list(DETECTORS))
    ap.add_argument("--out", type=Path, default=Path("runs/bench/bench_detectors.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_header())
    folder = photo_dir()
    missing = [n for n in FACES if not (folder / n).is_file()]
    if missing:  # run_all.py reads the last line: say what was skipped, and do not fail the run
        print(f"skipped: {folder} lacks {missing}; run the tests once (tests/conftest.py fetches them with npm)")
        return {}
    photos = {n: np.asarray(Image.open(folder / n).convert("RGB")) for n in FACES}
    frames = [frame_640x480(p) for p in photos.values()]
    n_marked = sum(len(v) for v in FACES.values())
    rows, matches = {}, {}
    print(f"\n{'detector':<22} {'found':>7} {'recall':>7} {'false':>6} {'ms/photo':>9} {'ms/640x480':>11}")
    for name in args.only:
        kind, opts = DETECTORS[name]
        try:
            det = get_detector(kind, **opts)
        except ImportError as e:  # MTCNN without lanfer[faces]
            print(f"{name:<22} skipped: {e}")
            continue
        det.detect([frames[0]])  # warm-up: weights, kernels
        found = false = 0
        per_photo, photo_ms = {}, []
        for n, image in photos.items():
            t = time.perf_counter()
            faces = det.detect([image])[0]
            photo_ms.append(1e3 * (time.perf_counter() - t))
            matched, extra = match(faces, FACES[n])
            hits = sum(m is not None for m in matched)
            found, false = found + hits, false + extra
            per_photo[n] = {"marked": len(FACES[n]), "found": hits, "false": extra, "boxes": len(faces)}
            matches.setdefault(name, {})[n] = matched
        frame_ms = []
        for frame in frames:
            det.detect([frame])
            times = []
            for _ in range(args.reps):
                t = time.perf_counter()
                det.detect([frame])
                times.append(1e3 * (time.perf_counter() - t))
            frame_ms.append(statistics.median(times))
        rows[name] = {"detector": kind, "options": opts, "marked": n_marked, "found": found, "recall": found / n_marked,
                      "false": false, "per_photo": per_photo, "ms_per_photo_1920": statistics.median(photo_ms),
                      "ms_per_640x480_frame": statistics.median(frame_ms),
                      "ms_per_640x480_frame_each": [round(v, 2) for v in frame_ms]}
        r = rows[name]
        print(f"{name:<22} {found:>3}/{n_marked:<3} {r['recall']:>7.1%} {false:>6} {r['ms_per_photo_1920']:>9.1f} "
              f"{r['ms_per_640x480_frame']:>11.1f}")
    if "blazeface" in matches and "mtcnn" in matches:
        # how far BlazeFace's five points (eyes and nose its own, mouth corners placed about its mouth centre)
        # lie from MTCNN's on the faces both found, in MTCNN's inter-ocular distances
        pairs = [(b, m) for n in FACES for b, m in zip(matches["blazeface"][n], matches["mtcnn"][n])]
        gaps = np.array([landmark_gap(b, m) for b, m in pairs if b is not None and m is not None])
        agree = {"faces": len(gaps), "median_by_landmark": np.median(gaps, 0).round(3).tolist(),
                 "landmarks": ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]}
        rows["blazeface"]["landmarks_vs_mtcnn_iod"] = agree
        print(f"landmarks vs MTCNN's on {len(gaps)} faces, median distance / inter-ocular distance "
              f"(eyes, nose, mouth corners): {' '.join(f'{v:.3f}' for v in agree['median_by_landmark'])}")
    result = {"machine": machine_header(), "threads": args.threads, "reps": args.reps, "detectors": rows,
              "command": "python benchmarks/bench_detectors.py " + " ".join(argv if argv is not None else
                                                                            sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if "blazeface" in rows and "mtcnn" in rows:
        b, m = rows["blazeface"], rows["mtcnn"]
        print(f"blazeface {b['found']}/{n_marked} faces, {b['ms_per_640x480_frame']:.1f} ms/frame; mtcnn "
              f"{m['found']}/{n_marked}, {m['ms_per_640x480_frame']:.1f} ms/frame "
              f"({m['ms_per_640x480_frame'] / b['ms_per_640x480_frame']:.1f}x)")
    return result


if __name__ == "__main__":
    main()
