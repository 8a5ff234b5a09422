"""Class-balanced oversampling for imbalanced training sets (AffectNet; paper Table 4, RAN+)."""
from __future__ import annotations

import torch
from torch.utils.data import WeightedRandomSampler


def class_of(label) -> int:
    """The class index of a hard label, or the arg-max of a soft one."""
    if isinstance(label, int):
        return label
    values = label.tolist() if isinstance(label, torch.Tensor) else list(label)
    return max(range(len(values)), key=lambda k: values[k])


def balanced_weights(dataset) -> torch.Tensor:
    """Per-sample weight ``1 / count(class of the sample)``: every class is drawn equally often."""
    labels = [class_of(t) for t in dataset.targets]
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long), minlength=len(dataset.classes))
    return 1.0 / counts[torch.as_tensor(labels, dtype=torch.long)].double()  # (N,)


def balanced_sampler(dataset, num_samples: int | None = None,
                     generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """A :class:`~torch.utils.data.WeightedRandomSampler` drawing classes uniformly, with replacement.

    Each epoch draws ``num_samples`` (default: the dataset's size) items; rare classes repeat, frequent
    ones are undersampled. The train loop uses it when ``data.balanced_sampling`` is true.
    """
    if len(dataset) == 0:
        raise ValueError("balanced_sampler: the dataset is empty")
    weights = balanced_weights(dataset)
    return WeightedRandomSampler(weights, num_samples or len(dataset), replacement=True, generator=generator)
