"""Cell pictures: every op, input and the concat appear; PNG and SVG files are written."""
from __future__ import annotations

import numpy as np

from nasnet_zoo import NASNET_A
from nasnet_zoo.search import NASNetSpace
from nasnet_zoo.visualize import _OP_LABELS, draw_cell, draw_genotype


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_draw_cell_shows_every_op_input_and_the_output(tmp_path):
    cell = NASNET_A.reduction
    fig = draw_cell(cell, tmp_path / "reduction.svg", title="NASNet-A reduction")
    texts = _texts(fig)
    labels = [_OP_LABELS[op] for block in cell.blocks for op in block.ops]
    assert sorted(t for t in texts if t in _OP_LABELS.values()) == sorted(labels)
    assert {"h[i]", "h[i-1]", "concat\nh[i+1]"} <= set(texts)
    assert texts.count("+") == len(cell.blocks)
    assert "output = concat(block 1, block 2, block 3, block 4)" in fig.axes[0].get_title()
    svg = (tmp_path / "reduction.svg").read_text()
    assert svg.startswith("<?xml") and "<svg" in svg


def test_draw_genotype_writes_a_png_of_both_cells(tmp_path):
    space = NASNetSpace()
    genotype = space.to_genotype(space.random_decisions(np.random.default_rng(0)), name="sampled")
    fig = draw_genotype(genotype, tmp_path / "cells.png")
    assert len(fig.axes) == 2 and fig.axes[0].get_title().startswith("sampled: Normal cell")
    combiners = [b.combiner for b in genotype.normal.blocks + genotype.reduction.blocks]
    assert _texts(fig).count("C") == combiners.count("concat")
    data = (tmp_path / "cells.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
    fig = draw_genotype(NASNET_A, tmp_path / "nasnet_a.png")
    assert len(fig.axes) == 2
    for ax, cell in zip(fig.axes, (NASNET_A.normal, NASNET_A.reduction)):
        drawn = sorted(t.get_text() for t in ax.texts if t.get_text() in _OP_LABELS.values())
        assert drawn == sorted(_OP_LABELS[op] for block in cell.blocks for op in block.ops)
    assert (tmp_path / "nasnet_a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
