"""The search space as data: validation errors, JSON round trip, the published NASNet-A cells."""
from __future__ import annotations

import json

import pytest

from nasnet_zoo import NASNET_A, OPS, Block, CellGenotype, Genotype, GenotypeError


def test_thirteen_ops():
    assert len(OPS) == 13 and len(set(OPS)) == 13


def test_nasnet_a_matches_tf_slim_lists():
    normal, reduction = NASNET_A.normal, NASNET_A.reduction
    assert [op for b in normal.blocks for op in b.ops] == [
        "sep_conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_3x3", "avg_pool_3x3",
        "identity", "avg_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "identity"]
    assert [i for b in normal.blocks for i in b.inputs] == [0, 1, 1, 1, 0, 1, 1, 1, 0, 0]
    assert normal.concat == (1, 2, 3, 4, 5, 6)
    assert [i for b in reduction.blocks for i in b.inputs] == [0, 1, 0, 1, 0, 1, 3, 2, 2, 0]
    assert reduction.concat == (3, 4, 5, 6)
    assert all(b.combiner == "add" for b in normal.blocks + reduction.blocks)


def test_json_round_trip():
    text = NASNET_A.to_json()
    again = Genotype.from_json(text)
    assert again == NASNET_A and again.name == "NASNet-A"
    assert json.loads(again.to_json()) == json.loads(text)


def test_concat_defaults_to_unused_states():
    data = NASNET_A.to_dict()
    del data["normal"]["concat"]
    g = Genotype.from_dict(data)
    assert g.normal.concat == g.normal.unused_states() == (2, 3, 4, 5, 6)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["normal"]["blocks"][0].update(ops=["sep_conv_5x5", "sep_conv_3x4"]), "unknown op 'sep_conv_3x4'"),
    (lambda d: d["normal"]["blocks"][0].update(inputs=[0, 2]), "input index 2 out of range"),
    (lambda d: d["reduction"]["blocks"][3].update(inputs=[9, 2]), "reduction cell block 3: input index 9"),
    (lambda d: d["normal"]["blocks"][1].update(combiner="mul"), "unknown combiner 'mul'"),
    (lambda d: d["normal"].update(concat=[1, 7]), "concat index 7 out of range"),
    (lambda d: d.pop("reduction"), "missing ['reduction']"),
    (lambda d: d["normal"]["blocks"][0].pop("ops"), "missing the key 'ops'"),
])
def test_validation_errors_are_precise(mutate, message):
    data = json.loads(NASNET_A.to_json())
    mutate(data)
    with pytest.raises(GenotypeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Genotype.from_dict(data)


def test_bad_op_suggests_close_name():
    with pytest.raises(GenotypeError, match="did you mean 'sep_conv_3x3'"):
        CellGenotype(blocks=(Block((0, 1), ("sep_conv3x3", "identity")),), concat=(2,)).validate()


def test_not_json():
    with pytest.raises(GenotypeError, match="not valid JSON"):
        Genotype.from_json("Genotype(normal=...)")
