"""Aspect-ratio grouping: batches hold only landscape or only portrait images, so padding stays small."""
from __future__ import annotations

from typing import Iterator, Sequence

from torch.utils.data import Sampler


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices from ``sampler`` that share a group (e.g. landscape vs portrait).

    Indices are taken in the sampler's order; a batch is emitted as soon as its group fills. Leftovers at the
    end of an epoch are emitted as smaller batches so no image is skipped.
    """

    def __init__(self, sampler: Sampler[int], group_ids: Sequence[int], batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler, self.group_ids, self.batch_size = sampler, list(group_ids), batch_size

    def __iter__(self) -> Iterator[list[int]]:
        pending: dict[int, list[int]] = {}
        for index in self.sampler:
            group = pending.setdefault(self.group_ids[index], [])
            group.append(index)
            if len(group) == self.batch_size:
                yield group
                pending[self.group_ids[index]] = []
        for group in pending.values():
            if group:
                yield group

    def __len__(self) -> int:
        counts: dict[int, int] = {}
        for index in self.sampler:
            counts[self.group_ids[index]] = counts.get(self.group_ids[index], 0) + 1
        return sum(-(-c // self.batch_size) for c in counts.values())


def aspect_ratio_groups(aspect_ratios: Sequence[float]) -> list[int]:
    """Group 0 for portrait (w < h), 1 for landscape or square."""
    return [int(r >= 1.0) for r in aspect_ratios]
