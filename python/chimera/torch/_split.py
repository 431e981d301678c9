"""Cutting a model into pipeline stages."""
from __future__ import annotations

from typing import Sequence

from torch import nn


def split_sequential(model: nn.Sequential, stages: int, *, sizes: Sequence[int] | None = None) -> list[nn.Module]:
    """Cut an ``nn.Sequential`` into ``stages`` contiguous blocks (the
    modules themselves, not copies). ``sizes`` gives each block's layer
    count; by default the layers are spread as evenly as possible, the first
    blocks taking one more. Raises ValueError when the model cannot be cut so.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"split_sequential cuts a torch.nn.Sequential (got {type(model).__name__}); cut other "
                        "models into a list of stage modules yourself")
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
        raise ValueError(f"stages must be a positive int (got {stages!r})")
    layers = list(model)
    if sizes is None:
        if len(layers) < stages:
            raise ValueError(f"cannot cut a Sequential of {len(layers)} layers into {stages} stages (each stage "
                             "needs at least one layer)")
        base, extra = divmod(len(layers), stages)
        sizes = [base + (1 if i < extra else 0) for i in range(stages)]
    sizes = list(sizes)
    if len(sizes) != stages or any(size < 1 for size in sizes) or sum(sizes) != len(layers):
        raise ValueError(f"sizes {sizes} must be {stages} positive layer counts summing to the model's "
                         f"{len(layers)} layers")
    blocks, start = [], 0
    for size in sizes:
        blocks.append(nn.Sequential(*layers[start:start + size]))
        start += size
    return blocks
