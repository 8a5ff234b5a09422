"""What makes ``--resume`` exact and safe: the saved run's model and data must be this config's, and the log
keeps only the epochs the checkpoint holds."""
from __future__ import annotations

import json
from pathlib import Path

from ..config import Config, ConfigError
from ..distributed import log
from ..io import atomic_write


def check_resume_config(saved: dict | None, cfg: Config, where: Path) -> None:
    """Refuse a resume whose model or data would differ from the run it continues (nanoGPT checks the same).

    The schedule may change (more epochs extend a run); the model's shape, the classes and the input may not:
    the optimizer state and the best-so-far score would belong to another model."""
    if not saved:
        return
    now = cfg.to_dict()
    diffs = []
    for section, keys in (("model", ("name", "num_classes", "fusion", "head_widths", "dropout")),
                          ("data", ("name", "image_size", "normalize", "classes", "color")),
                          ("loss", ("alpha", "logit_adjust", "class_weight")), ("guidance", ("source",))):
        for k in keys:
            b = now[section][k]
            a = saved.get(section, {}).get(k, b)
            if a != b:
                diffs.append(f"{section}.{k}: {a!r} in the saved run, {b!r} now")
    if diffs:
        raise ConfigError(f"--resume: {where} was trained with another config ({'; '.join(diffs)}); resume with "
                          "the run's own config.yaml or start a new --out")


def _drop_log_past(path: Path, epochs_done: int) -> None:
    """Keep only the metrics.jsonl lines of the epochs ``last.ckpt`` holds. An epoch's line is written before its
    checkpoint, so a run killed between the two would log that epoch again when resumed; a line cut off by the
    kill (not JSON) goes too."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)

    def keep(line: str) -> bool:
        try:
            return json.loads(line).get("epoch", 0) <= epochs_done
        except ValueError:
            return False

    kept = [ln for ln in lines if keep(ln)]
    if len(kept) != len(lines):
        log(f"{path}: dropped {len(lines) - len(kept)} line(s) past epoch {epochs_done}, the checkpoint's")
        atomic_write(path, lambda tmp: tmp.write_text("".join(kept)))
