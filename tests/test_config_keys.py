"""One key spelling: lower case and current names are what configs, docs and saved runs use; old spellings
(upper case, renamed keys) still load, with one FutureWarning that names the new keys."""
from __future__ import annotations

import argparse
import re
import warnings

import pytest
import yaml

from nasnet_zoo.cli.common import load_run_config
from nasnet_zoo.config import ConfigError, config_keys, dump_config, load_config
from nasnet_zoo.configs import config_path
from nasnet_zoo.detection.config import DetConfig

DEMO = config_path("det", "demo")


def _upper_keys(data: dict) -> dict:
    """``data`` with every config key upper-cased (values, and the free-form dicts under them, untouched)."""
    return {k.upper(): _upper_keys(v) if isinstance(v, dict) and k not in ("backbone_args", "options") else v
            for k, v in data.items()}


def _no_warnings(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args)


def test_shipped_det_configs_are_lower_case_and_load_without_a_note():
    for name in ("demo", "demo_c4", "coco_tiny", "coco_tiny_overfit", "coco_mobile_fpn", "coco_large_c4"):
        path = config_path("det", name)
        data = yaml.safe_load(path.read_text())
        assert all(k == k.lower() for k in data), (name, list(data))
        _no_warnings(load_config, DetConfig(), path)


def test_an_upper_case_det_file_loads_as_the_lower_case_one_with_one_note(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(_upper_keys(yaml.safe_load(DEMO.read_text()))))
    assert "MODEL:" in old.read_text() and "NUM_TRAIN:" in old.read_text()
    with pytest.warns(FutureWarning) as record:
        cfg = load_config(DetConfig(), old)
    assert len(record) == 1
    message = str(record[0].message)
    assert "\n" not in message and re.search(r"DEMO.CANVAS -> demo.canvas, .* \(and \d+ more\)", message)
    assert cfg == _no_warnings(load_config, DetConfig(), DEMO)


def test_upper_case_overrides_name_the_new_keys_and_give_the_same_config():
    with pytest.warns(FutureWarning, match=r"SOLVER.BASE_LR -> solver.base_lr, THREADS -> threads"):
        old = load_config(DetConfig(), None, ["SOLVER.BASE_LR", "0.5", "THREADS", "1"])
    new = _no_warnings(load_config, DetConfig(), None, ["solver.base_lr", "0.5", "threads", "1"])
    assert old == new and new.solver.base_lr == 0.5


def test_dump_config_writes_the_lower_case_keys(tmp_path):
    with pytest.warns(FutureWarning):
        cfg = load_config(DetConfig(), None, ["SOLVER.BASE_LR", "0.5"])
    dump_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "solver:" in text and "base_lr: 0.5" in text and "SOLVER" not in text
    assert all(k == k.lower() for k in config_keys(cfg))


def test_a_bad_key_still_names_the_problem():
    with pytest.raises(ConfigError, match=r"unknown config key 'SOLVER.BASE_LRR'; did you mean solver.base_lr"):
        load_config(DetConfig(), None, ["SOLVER.BASE_LRR", "0.1"])
    with pytest.raises(ConfigError, match=r"solver.base_lr: expected float"):
        load_config(DetConfig(), None, ["SOLVER.BASE_LR", "[1, 2]"])


def test_resume_of_a_det_run_saved_with_upper_case_keys(tmp_path):
    (tmp_path / "config.yaml").write_text("SOLVER:\n  BASE_LR: 0.1\n  MAX_ITER: 10\nOUTPUT_DIR: x\n")
    args = argparse.Namespace(resume=True, output_dir=str(tmp_path), config_file=None, opts=["solver.max_iter", "20"])
    with pytest.warns(FutureWarning, match="SOLVER.BASE_LR -> solver.base_lr"):
        cfg = load_run_config(DetConfig(), args, {}, may_change_on_resume=("solver.max_iter",))
    assert (cfg.solver.base_lr, cfg.solver.max_iter, cfg.output_dir) == (0.1, 20, "x")
    args.opts = ["SOLVER.BASE_LR", "0.2"]
    with pytest.warns(FutureWarning), pytest.raises(ConfigError, match="--resume cannot change solver.base_lr"):
        load_run_config(DetConfig(), args, {}, may_change_on_resume=("solver.max_iter",))


def test_the_base_filter_count_is_num_conv_filters_and_the_old_filters_keys_still_load(tmp_path):
    from nasnet_zoo.search.settings import SearchConfig
    from nasnet_zoo.training.config import TrainConfig

    old_file = tmp_path / "old.yaml"
    old_file.write_text("child:\n  filters: 12\nlatency:\n  filters: 20\n")
    with pytest.warns(FutureWarning, match=r"child.filters -> child.num_conv_filters, "
                                           r"latency.filters -> latency.num_conv_filters"):
        old = load_config(SearchConfig(), old_file)
    with pytest.warns(FutureWarning, match=r"overrides: .*CHILD.FILTERS -> child.num_conv_filters"):
        old_pair = load_config(SearchConfig(), None, ["CHILD.FILTERS", "12", "latency.filters", "20"])
    new = _no_warnings(load_config, SearchConfig(), None, ["child.num_conv_filters", "12",
                                                           "latency.num_conv_filters", "20"])
    assert old == old_pair == new and (new.child.num_conv_filters, new.latency.num_conv_filters) == (12, 20)
    with pytest.warns(FutureWarning, match=r"model.filters -> model.num_conv_filters"):
        cls = load_config(TrainConfig(), None, ["model.filters", "16"])
    assert cls.model.num_conv_filters == 16
    dump_config(new, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["child"]["num_conv_filters"] == 12 and "filters" not in saved["child"]
    assert "filters" not in saved["latency"] and not any(k.endswith(".filters") for k in config_keys(new))
    for section in ("child", "latency"):  # the shipped configs use the new key
        for path in config_path("search", "laptop").parent.glob("*.yaml"):
            assert "filters" not in (yaml.safe_load(path.read_text()).get(section) or {}), path


def test_resume_of_a_search_saved_with_the_old_filters_key(tmp_path):
    from nasnet_zoo.cli.search import FLAG_KEYS, MAY_CHANGE_ON_RESUME
    from nasnet_zoo.search.settings import SearchConfig

    (tmp_path / "config.yaml").write_text("children: 4\nseed: 1\nchild:\n  filters: 12\n")
    args = argparse.Namespace(resume=True, output_dir=str(tmp_path), config_file=None, opts=[], children=6)
    with pytest.warns(FutureWarning, match="child.filters -> child.num_conv_filters"):
        cfg = load_run_config(SearchConfig(), args, FLAG_KEYS, may_change_on_resume=MAY_CHANGE_ON_RESUME)
    assert (cfg.children, cfg.seed, cfg.child.num_conv_filters) == (6, 1, 12)


def test_the_old_filters_flags_still_work_with_a_note():
    from nasnet_zoo.cli import search, train_cls

    with pytest.warns(FutureWarning, match="--filters is deprecated; use --num-conv-filters"):
        args = train_cls.parse_args(["--filters", "12"])
    assert _no_warnings(train_cls.build_config, args).model.num_conv_filters == 12
    assert train_cls.build_config(train_cls.parse_args(["--num-conv-filters", "12"])).model.num_conv_filters == 12
    with pytest.warns(FutureWarning, match="--child-filters is deprecated; use --child-num-conv-filters"):
        args = search.parse_args(["--child-filters", "12", "--retrain-num-conv-filters", "16"])
    assert search.build_config(args).child.num_conv_filters == 12 and args.retrain_num_conv_filters == 16
    with pytest.warns(FutureWarning, match="--retrain-filters is deprecated"):
        assert search.parse_args(["--retrain-filters", "16"]).retrain_num_conv_filters == 16
