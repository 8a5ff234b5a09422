"""Per-face labels of the shipped model on the six face-api demo photos (tests/conftest.py fetches them with npm into
~/.cache/lanfer/face-api): python scripts/face_api_photos.py [--model NAME_OR_FILE] [--prior-tau TAU] [--detector NAME]
Each face as label(P(happiness))@x<left edge>,yaw<degrees>. Faces under 80 px are dropped (MTCNN also starts its
search there): the demo photos' people are all larger."""
import argparse
from pathlib import Path

from lanfer.faces import DEFAULT_DETECTOR, available_detectors
from lanfer.predict import Predictor, detector_for

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--model", default=None, help="a shipped model name or a model file (default: the default model)")
ap.add_argument("--prior-tau", type=float, default=None, help="another operating point (default: the model's own)")
ap.add_argument("--detector", default=DEFAULT_DETECTOR, choices=available_detectors(),
                help=f"face detector (default {DEFAULT_DETECTOR}; mtcnn needs lanfer[faces])")
a = ap.parse_args()
paths = sorted(Path.home().joinpath(".cache/lanfer/face-api").glob("sample*.jpg"))
detector = detector_for(a.detector, "cpu", min_face_size=80)
p = Predictor.from_checkpoint(a.model, device="cpu", detector=detector, prior_tau=a.prior_tau)
t = p.predict(paths, progress=False, overlay_dir="runs/face_api_photos")
for src, g in t.groupby("source"):
    print(Path(src).name, ", ".join(f"{r.label}({r.prob_happiness:.2f})@x{int(r.x1)},yaw{r.yaw:.0f}" for r in g.itertuples() if r.status == "ok"))
