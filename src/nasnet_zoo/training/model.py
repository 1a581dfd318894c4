"""The network a run trains: a zoo model by name, or a searched genotype at a chosen rank and size."""
from __future__ import annotations

from typing import Any

from ..factory import create_model
from ..nasnet import NASNet
from .config import ModelSettings
from .genotype_source import genotype_at_rank


def _nonzero(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v}


def build_model(settings: ModelSettings, *, num_classes: int, image_size: int = 0) -> tuple[NASNet, dict[str, Any]]:
    """The model and a description of where it came from (registry name, or genotype file, rank and reward)."""
    overrides = _nonzero(stem_multiplier=settings.stem_multiplier, drop_path_keep_prob=settings.drop_path_keep_prob,
                         image_size=image_size, cells_per_stack=settings.cells_per_stack,
                         num_conv_filters=settings.num_conv_filters)
    overrides["aux_head"] = settings.aux_weight > 0
    if settings.genotype:
        if not settings.cells_per_stack or not settings.num_conv_filters:
            raise ValueError("a genotype needs a network size: give --cells-per-stack N and --num-conv-filters F "
                             "(base filters, e.g. 2 and 32 for a quick CIFAR retrain)")
        entry = genotype_at_rank(settings.genotype, settings.rank)
        model = create_model(entry["genotype"], stem=settings.stem, num_classes=num_classes, **overrides)
        return model, {"model": None, "genotype_file": settings.genotype, "rank": settings.rank,
                       "search_reward": entry["reward"]}
    # Pretrained: load the published head as is, then swap it when this data set has another class count.
    model = create_model(settings.name, pretrained=settings.pretrained or False,
                         num_classes=None if settings.pretrained else num_classes, **overrides)
    if model.config.num_classes != num_classes:
        model.reset_classifier(num_classes)
    return model, {"model": settings.name}
