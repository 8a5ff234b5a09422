"""Per-face labels of the shipped model on the six face-api demo photos (tests/conftest.py fetches them with npm into
~/.cache/lanfer/face-api): python scripts/face_api_photos.py"""
from pathlib import Path
from lanfer.predict import Predictor
from lanfer.faces import get_detector
paths = sorted(Path.home().joinpath(".cache/lanfer/face-api").glob("sample*.jpg"))
p = Predictor.from_pretrained(device="cpu", detector=get_detector("mtcnn", min_face_size=80))
t = p.predict(paths, progress=False, overlay_dir="runs/face_api_photos")
for src, g in t.groupby("source"):
    print(Path(src).name, ", ".join(f"{r.label}({r.prob_happiness:.2f})@x{int(r.x1)},yaw{r.yaw:.0f}" for r in g.itertuples() if r.status == "ok"))
