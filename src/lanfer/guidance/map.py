"""The runtime guidance map: K=2 centres per position, ``assign`` for the BCE loss, files and a summary."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write

_FORMAT = "lanfer.guidance"
_FORMAT_VERSION = 1

#: An attentive fraction above this marks a position whose two clusters are nearly equal in size: there
#: the paper's "smaller cluster is attentive" rule (eq. 4) decides on a coin flip.
NEAR_EQUAL = 0.4


_TENSORS = "centers (H*W, 2, C), attentive (H*W,), counts (H*W, 2), inertia (H*W,)"


class GuidanceError(ValueError):
    """A guidance file that cannot be used: unreadable, not a guidance file, or lacking what one holds.

    The message names the file and what was expected; the command line prints it without a traceback."""


# ----------------------------------------------------------------------------------------------------
# The fitted result


@dataclass(repr=False, eq=False)
class Guidance:
    """K=2 centres per feature-map position and which of the two is attentive.

    Attributes:
        centers: (H*W, 2, C) float32, position p = row * width + col.
        attentive: (H*W,) long, index (0 or 1) of the attentive centre: the cluster with fewer training
            samples (paper eq. 4; on a tie, cluster 1 as the equation's "otherwise" branch).
        counts: (H*W, 2) long, training samples nearest each centre.
        inertia: (H*W,) float64, sum of squared distances of the training samples to their nearest centre.
        height, width: the feature-map size the centres belong to.
        meta: JSON-friendly facts: source backbone/checkpoint, seed, n, iterations run, stability, ...
    """

    centers: torch.Tensor
    attentive: torch.Tensor
    counts: torch.Tensor
    inertia: torch.Tensor
    height: int
    width: int
    meta: dict[str, Any] = field(default_factory=dict)
    _planes: dict = field(default_factory=dict, init=False, compare=False)
    path: str | None = field(default=None, init=False, compare=False)  # the file it was loaded from

    def __post_init__(self):
        p = self.height * self.width
        if self.centers.ndim != 3 or self.centers.shape[:2] != (p, 2):
            raise ValueError(f"centers must be (H*W={p}, 2, C); got {tuple(self.centers.shape)}")
        for name, shape in (("attentive", (p,)), ("counts", (p, 2)), ("inertia", (p,))):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} must have shape {shape}; got {tuple(getattr(self, name).shape)}")

    @property
    def channels(self) -> int:
        return int(self.centers.shape[2])

    @property
    def positions(self) -> int:
        return self.height * self.width

    def __repr__(self) -> str:
        return (f"Guidance({self.height}x{self.width} positions, C={self.channels}, "
                f"n={int(self.counts[0].sum())}, mean attentive fraction "
                f"{float(self.attentive_fraction().mean()):.3f}, source={self.meta.get('source')!r})")

    # -- using it -------------------------------------------------------------------------------------

    def _plane(self, device: torch.device):
        """(w, b) of the test ``x . w > b`` (nearer centre 1), computed exactly as in the fit."""
        key = str(device)
        if key not in self._planes:
            c = self.centers.float()
            w = c[:, 1] - c[:, 0]  # (P, C)
            b = ((c[:, 1].double() ** 2).sum(-1) - (c[:, 0].double() ** 2).sum(-1)) / 2  # (P,)
            self._planes[key] = (w.to(device), b.float().to(device), (self.attentive == 1).to(device))
        return self._planes[key]

    @torch.no_grad()
    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """Attention guidance map of a batch of backbone features.

        Args:
            features: F_o, (B, C, H, W) on any device and of any floating dtype (or a numpy array).
        Returns:
            (B, 1, H, W) of 0/1 on the same device, 1 where the feature vector is nearer the attentive
            centre; dtype of ``features`` if floating, else float32. Never carries gradient.
        """
        x = torch.as_tensor(features).detach()
        if x.ndim != 4:
            raise ValueError(f"assign expects F_o of shape (B, C, H, W); got {tuple(x.shape)}")
        want = (self.channels, self.height, self.width)
        if tuple(x.shape[1:]) != want:
            # GuidanceError (a ValueError) so the command line says it in one line, naming the file
            source = f"the guidance file {self.path!r}" if self.path else "the guidance centres"
            raise GuidanceError(f"assign: features have (C, H, W) = {tuple(x.shape[1:])} but {source} was "
                                f"fitted on (C, H, W) = {want}; use features from the same backbone and input "
                                "size (data.image_size / 32 per side), or refit the guidance")
        out_dtype = x.dtype if x.is_floating_point() else torch.float32
        w, b, att_is_1 = self._plane(x.device)
        xf = x.float().reshape(x.shape[0], self.channels, self.positions)  # (B, C, P)
        near1 = torch.einsum("bcp,pc->bp", xf, w) > b  # (B, P)
        attentive = near1 == att_is_1  # nearer the attentive centre
        return attentive.to(out_dtype).reshape(x.shape[0], 1, self.height, self.width)

    def attentive_fraction(self) -> torch.Tensor:
        """(H*W,) float64: fraction of the training set that fell in the attentive cluster."""
        n_att = self.counts.gather(1, self.attentive[:, None])[:, 0].double()
        return n_att / self.counts.sum(1).clamp_min(1).double()

    # -- files ----------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write a small safetensors file (centres, attentive, counts, inertia; meta as JSON metadata).
        Written through :func:`lanfer.io.atomic_write`, so an interrupted save never leaves half a file."""
        from safetensors.torch import save_file

        tensors = {"centers": self.centers.float().contiguous(), "attentive": self.attentive.long().contiguous(),
                   "counts": self.counts.long().contiguous(), "inertia": self.inertia.double().contiguous()}
        metadata = {"format": _FORMAT, "format_version": str(_FORMAT_VERSION), "height": str(self.height),
                    "width": str(self.width), "meta": json.dumps(self.meta, sort_keys=True)}
        return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Guidance:
        """Read a file written by :meth:`save`.

        Raises:
            FileNotFoundError: there is no such file.
            GuidanceError: the file is truncated or not safetensors, is another kind of safetensors file,
                has a newer format version, or lacks (or has mis-shaped) tensors or metadata.
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"guidance file {str(path)!r} does not exist; fit one with `lanfer cluster` "
                                    "or lanfer.fit_guidance(...).save(path)")
        refit = "; fit a new one with `lanfer cluster` or lanfer.fit_guidance(...).save(path)"
        try:
            with safe_open(str(path), framework="pt") as f:
                md = f.metadata() or {}
                # only a guidance file's own tensors are read, and only once the header says it is one
                ours = md.get("format") == _FORMAT
                names = set(f.keys()) & {"centers", "attentive", "counts", "inertia"} if ours else set()
                tensors = {k: f.get_tensor(k) for k in names}
        except Exception as e:  # safetensors raises its own error types for a corrupt or truncated file
            raise GuidanceError(f"{str(path)!r} is not a readable safetensors file ({e}); expected a lanfer "
                                f"guidance file written by `lanfer cluster` or Guidance.save (is it truncated "
                                f"or overwritten?){refit}") from None
        if md.get("format") != _FORMAT:
            raise GuidanceError(f"{str(path)!r} is not a lanfer guidance file (metadata format="
                                f"{md.get('format')!r}, expected {_FORMAT!r}){refit}")
        try:
            version = int(md.get("format_version", 0))
            height, width = int(md["height"]), int(md["width"])
            meta = json.loads(md.get("meta", "{}"))
        except (KeyError, ValueError) as e:  # json.JSONDecodeError is a ValueError
            raise GuidanceError(f"{str(path)!r} has broken guidance metadata ({type(e).__name__}: {e}); expected "
                                f"format_version, height and width as integers and meta as JSON{refit}") from None
        if version > _FORMAT_VERSION:
            raise GuidanceError(f"{str(path)!r} has guidance format version {version}; this lanfer reads up to "
                                f"{_FORMAT_VERSION}: upgrade lanfer")
        missing = {"centers", "attentive", "counts", "inertia"} - set(tensors)
        if missing:
            raise GuidanceError(f"{str(path)!r} lacks tensors {sorted(missing)}; a guidance file holds {_TENSORS}"
                                f"{refit}")
        if not (0 < height <= 1024 and 0 < width <= 1024) or not isinstance(meta, dict):
            raise GuidanceError(f"{str(path)!r} has guidance metadata height={height}, width={width}, meta of type "
                                f"{type(meta).__name__}; expected a lattice of 1..1024 positions per side and a "
                                f"JSON object{refit}")
        try:
            guidance = cls(centers=tensors["centers"], attentive=tensors["attentive"], counts=tensors["counts"],
                           inertia=tensors["inertia"], height=height, width=width, meta=meta)
        except ValueError as e:
            raise GuidanceError(f"{str(path)!r} does not hold a consistent guidance map for {height}x{width} "
                                f"positions ({e}){refit}") from None
        binary = ((guidance.attentive == 0) | (guidance.attentive == 1)).all()
        if not torch.isfinite(guidance.centers).all() or not binary:
            raise GuidanceError(f"{str(path)!r} holds NaN/inf centres or attentive indices other than 0/1{refit}")
        guidance.path = str(path)
        return guidance

    # -- reading it -----------------------------------------------------------------------------------

    def summary(self, near_equal: float = NEAR_EQUAL) -> str:
        """A text table per position: attentive fraction, agreement across seeds (when :func:`stability`
        has been run), and a flag where the split is nearly equal (fraction > ``near_equal``), i.e. where the
        smaller-cluster rule of eq. 4 is arbitrary."""
        frac = self.attentive_fraction().tolist()
        stab = self.meta.get("stability") or {}
        agree = stab.get("min_attentive_agreement")
        m = self.meta
        lines = [f"Guidance map: {self.height}x{self.width} positions, C={self.channels}, n={m.get('n')}, "
                 f"seed={m.get('seed')}, source={m.get('source')!r}",
                 f"iterations: sample {m.get('sample_iters')}, full passes {m.get('full_iters')}; "
                 f"positions not converged: {m.get('unconverged', '?')}"]
        if agree is not None:
            lines.append(f"stability over seeds {stab.get('seeds')}: agreement = fraction of training samples "
                         f"whose attentive label matches seed {stab['seeds'][0]} (worst other seed)")
        lines.append("")
        lines.append("attentive fraction by position (rows x cols):")
        for r in range(self.height):
            lines.append("  " + " ".join(f"{frac[r * self.width + c]:5.3f}" for c in range(self.width)))
        lines.append("")
        head = f"{'pos':>4} {'row':>3} {'col':>3} {'att':>3} {'n_att':>8} {'n_gen':>8} {'frac':>6}"
        head += f" {'agree':>6}" if agree is not None else ""
        lines.append(head + "  flag")
        flagged = []
        for p in range(self.positions):
            a = int(self.attentive[p])
            n_att, n_gen = int(self.counts[p, a]), int(self.counts[p, 1 - a])
            row = f"{p:>4} {p // self.width:>3} {p % self.width:>3} {a:>3} {n_att:>8} {n_gen:>8} {frac[p]:6.3f}"
            if agree is not None:
                row += f" {agree[p]:6.3f}"
            flag = ""
            if frac[p] > near_equal:
                flag = "near-equal split"
                flagged.append(p)
            lines.append(row + ("  " + flag if flag else ""))
        lines.append("")
        lines.append(f"{len(flagged)} of {self.positions} positions have an attentive fraction > {near_equal:g}"
                     + (": there the smaller-cluster rule is close to arbitrary." if flagged else "."))
        if agree is not None:
            low = [p for p in range(self.positions) if agree[p] < 0.9]
            lines.append(f"{len(low)} of {self.positions} positions agree across seeds on < 90% of samples.")
        return "\n".join(lines)
