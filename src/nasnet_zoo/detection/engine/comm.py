"""What both detection engines do across processes (the torchvision engine under torchrun, detectron2's launch)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch.distributed as dist


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (it fills a cache); the other processes run it afterwards and find the cache.

    Reads the process group that the engine has joined; outside one (a single process) it only runs the block."""
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    main = not distributed or dist.get_rank() == 0
    if not main:
        dist.barrier()
    yield
    if distributed and main:
        dist.barrier()
