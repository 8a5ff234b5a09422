"""The result of a prediction: :class:`PredictionTable` (a pandas DataFrame with the class names and a
``.plot``), its CSV/JSON writer and a text summary."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..faces import align_face
from .overlays import PALETTE, heat_overlay
from .record import LANDMARK_COLUMNS, STATUS_NO_FACE, STATUS_OK
from .sources import reread_frame
from ..io import atomic_write


class PredictionTable(pd.DataFrame):
    """One row per face (or per input/frame without one): a pandas DataFrame with ``classes`` and ``.plot``.

    Columns: ``source, frame, face, track_id, x1, y1, x2, y2, score, yaw, pitch, roll, <landmark>_x/_y, label,
    prob_<class>...`` and ``status`` (``"ok"``, ``"no face"`` or ``"error: ..."``); with
    ``return_attention=True`` also ``attention``, the F_m map (h, w) of each face as an object column.
    Boxes, landmarks and pose are in the source image's pixels and degrees (conventions of
    :mod:`lanfer.faces.pose`). ``track_id`` numbers each face of a video over its frames (from 0 in each
    video; missing for photos); a video row whose ``score`` is NaN was carried from the last detected frame
    (``detect_every > 1``), one between a track's classified frames has its track's last probabilities
    (``classify_every > 1``), and video probabilities are smoothed per track (``smooth``). Filtering, sorting
    and slicing keep the class and its metadata.
    """

    _metadata = ["classes", "normalize", "_images"]
    # Defaults for tables pandas builds without copying the metadata (e.g. a plain constructor call).
    classes: list[str] | None = None
    normalize: str = "imagenet"
    _images: dict | None = None

    @property
    def _constructor(self):
        return PredictionTable

    @property
    def probabilities(self) -> pd.DataFrame:
        """The ``prob_<class>`` columns renamed to the class names."""
        cols = [f"prob_{c}" for c in (self.classes or [])]
        return pd.DataFrame(self[cols].to_numpy(), index=self.index, columns=list(self.classes or []))

    def faces(self) -> "PredictionTable":
        """Only the rows of detected faces (status ``"ok"``)."""
        return self[self["status"] == STATUS_OK]

    def plot(self, row: int | str = 0, max_faces: int = 4):
        """Draw one image with matplotlib: its face boxes and labels, and per face the aligned crop with the
        attention map (when the table has it) and a probability bar chart. Returns the figure.

        ``row`` is a row label (int) or a source (str; its first frame). Images given as arrays can be
        drawn from the table they produced; files and video frames are re-read from disk.
        """
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        if isinstance(row, str):
            sel = self[self["source"] == row]
            if sel.empty:
                known = ", ".join(map(str, self["source"].unique()[:8]))
                raise KeyError(f"no rows with source {row!r}; sources: {known}")
            source, frame = row, int(sel["frame"].iloc[0]) if pd.notna(sel["frame"].iloc[0]) else 0
        else:
            r = self.loc[row]
            source, frame = r["source"], int(r["frame"]) if pd.notna(r["frame"]) else 0
        rows = self[(self["source"] == source) & (self["frame"] == frame)]
        if len(rows) and rows["status"].str.startswith("error").all():
            raise ValueError(f"{source}: nothing to draw ({rows['status'].iloc[0]})")
        image = reread_frame(source, frame, self._images or {})  # (H, W, 3) uint8
        faces = rows[rows["status"] == STATUS_OK].head(max_faces)
        classes = list(self.classes or [])
        n = len(faces)
        fig = Figure(figsize=(4.5 + 2.2 * max(n, 1), 4.2))
        grid = fig.add_gridspec(2, 1 + max(n, 1), width_ratios=[2.2] + [1] * max(n, 1))
        ax = fig.add_subplot(grid[:, 0])
        ax.imshow(image)
        ax.set_title(f"{Path(str(source)).name}" + (f" frame {frame}" if frame else ""), fontsize=9)
        ax.axis("off")
        if n == 0:
            status = rows["status"].iloc[0] if len(rows) else "not in table"
            ax.text(0.5, 0.02, status, transform=ax.transAxes, ha="center", color="red", fontsize=9)
        for j, (_, f) in enumerate(faces.iterrows()):
            probs = np.array([f[f"prob_{c}"] for c in classes], dtype=float)  # (K,)
            color = np.array(PALETTE[int(np.argmax(probs)) % len(PALETTE)]) / 255
            ax.add_patch(Rectangle((f["x1"], f["y1"]), f["x2"] - f["x1"], f["y2"] - f["y1"], fill=False,
                                   edgecolor=color, lw=2))
            ax.text(f["x1"], f["y1"], f"{j}: {f['label']} {probs.max():.2f}", color="white", fontsize=8,
                    va="bottom", bbox=dict(facecolor=color, alpha=0.8, pad=1, lw=0))
            crop = _face_crop(image, f, 112)  # (112, 112, 3)
            att = f.get("attention") if "attention" in faces.columns else None
            cax = fig.add_subplot(grid[0, 1 + j])
            if att is not None and not (isinstance(att, float) and math.isnan(att)):
                cax.imshow(np.clip(heat_overlay(crop / 255.0, np.asarray(att)), 0, 1))
                cax.set_title(f"face {j}: attention", fontsize=8)
            else:
                cax.imshow(crop)
                cax.set_title(f"face {j}", fontsize=8)
            cax.axis("off")
            bax = fig.add_subplot(grid[1, 1 + j])
            bax.barh(range(len(classes)), probs, color=[np.array(PALETTE[k % len(PALETTE)]) / 255
                                                         for k in range(len(classes))])
            bax.set_yticks(range(len(classes)), [c[:8] for c in classes], fontsize=7)
            bax.invert_yaxis()
            bax.set_xlim(0, 1)
            bax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        return fig


def _face_crop(image: np.ndarray, row: pd.Series, size: int) -> np.ndarray:
    """The aligned crop of a table row (from its landmarks), or the box resized when it has none."""
    lm = np.array([row[c] for c in LANDMARK_COLUMNS], dtype=float).reshape(5, 2)
    if np.isfinite(lm).all():
        return align_face(image, lm, size=size)
    from PIL import Image

    x1, y1, x2, y2 = (int(round(row[c])) for c in ("x1", "y1", "x2", "y2"))
    return np.asarray(Image.fromarray(image[max(y1, 0):y2, max(x1, 0):x2]).resize((size, size)))


def write_table(table: PredictionTable, path: str | Path) -> Path:
    """Write the table as CSV or JSON records (by suffix); the attention column stays in memory only."""
    path = Path(path)
    flat = pd.DataFrame(table.drop(columns=["attention"], errors="ignore"))
    if path.suffix == ".json":
        return atomic_write(path, lambda t: t.write_text(flat.to_json(orient="records", indent=1)))
    return atomic_write(path, lambda t: flat.to_csv(t, index=False, float_format="%.6g"))


def summarize(table: PredictionTable, max_sources: int = 20) -> str:
    """Faces found per source (and frames for videos), problems, and the wall time."""
    lines = []
    groups = list(table.groupby("source", sort=False))
    for source, g in groups[:max_sources]:
        ok = g[g["status"] == STATUS_OK]
        frames = g["frame"].nunique()
        what = f"{len(ok)} face{'s' * (len(ok) != 1)}"
        if frames > 1:
            what += f" in {frames} frames ({(g['status'] == STATUS_NO_FACE).sum()} without a face)"
        tracks = ok["track_id"].nunique() if "track_id" in ok.columns else 0
        if tracks:
            what += f", {tracks} track{'s' * (tracks != 1)}"
        bad = g[(g["status"] != STATUS_OK) & (g["status"] != STATUS_NO_FACE)]["status"].unique()
        if frames == 1 and len(ok) == 0:
            what = g["status"].iloc[0]
        elif len(bad):
            what += "; " + "; ".join(bad[:2])
        if len(ok):
            top = ok["label"].value_counts()
            what += " -- " + ", ".join(f"{k} {v}" for k, v in top.head(4).items())
        lines.append(f"  {source}: {what}")
    if len(groups) > max_sources:
        lines.append(f"  ... and {len(groups) - max_sources} more sources")
    n_ok = int((table["status"] == STATUS_OK).sum())
    wall = table.attrs.get("wall_s", float("nan"))
    frames = table.attrs.get("frames", 0)
    head = (f"{n_ok} faces in {len(groups)} sources ({frames} frames) in {wall:.1f} s "
            f"({frames / wall if wall else 0:.1f} frames/s, {table.attrs.get('backend', 'torch')})")
    return "\n".join([head, *lines])
