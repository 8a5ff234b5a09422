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


class EpochSampler(torch.utils.data.Sampler[int]):
    """One epoch's training order, the same whatever the number of processes; this rank's share of it.

    The epoch's global order is drawn from a generator seeded with ``seed`` alone: a permutation of the
    dataset, or (``balanced``) ``len(dataset)`` class-balanced draws with replacement (:func:`balanced_weights`).
    It is padded by wrapping to a multiple of ``world`` and dealt out round-robin: rank ``r`` takes items
    ``r, r + world, ...``. So the ``k``-th batches of the ``world`` ranks together hold exactly the items of the
    ``k``-th batch of a single process whose batch is ``world`` times larger, and a DDP run with gradients
    averaged over ranks takes the single process's steps. With ``world=1`` the order is the one
    :class:`~torch.utils.data.RandomSampler` / :class:`~torch.utils.data.WeightedRandomSampler` draw from the
    same generator, so single-process runs keep their order.
    """

    def __init__(self, dataset, seed: int, balanced: bool = False, rank: int = 0, world: int = 1):
        n = len(dataset)
        if n == 0:
            raise ValueError("EpochSampler: the dataset is empty")
        if not 0 <= rank < world:
            raise ValueError(f"EpochSampler: rank {rank} is not in 0..{world - 1}")
        g = torch.Generator().manual_seed(seed)
        if balanced:
            order = torch.multinomial(balanced_weights(dataset), n, replacement=True, generator=g)  # (N,)
        else:
            order = torch.randperm(n, generator=g)  # (N,)
        per_rank = -(-n // world)
        order = order.repeat(-(-per_rank * world // n))[: per_rank * world]  # wrap-padded to world * per_rank
        self.indices: list[int] = order[rank::world].tolist()

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
