"""The one command-line front: shared flags, flags to config keys, trailing overrides, exit code 2."""
from __future__ import annotations

import pytest

from nasnet_zoo.cli.common import add_overrides, config_overrides, default_argument_parser, usage_error
from nasnet_zoo.cli.predict_det import split_overrides
from nasnet_zoo.config import ConfigError

FLAGS = {"epochs": "solver.epochs", "output_dir": "output_dir"}


def _parse(*argv: str):
    parser = default_argument_parser("demo", None, eval_only=True)
    parser.add_argument("--epochs", type=int)
    add_overrides(parser, "solver.lr 0.1")
    return parser.parse_args(list(argv))


def test_the_shared_flags_and_the_order_flags_then_trailing_pairs():
    args = _parse("--config-file", "a.yaml", "--output-dir", "runs/x", "--resume", "--eval-only", "--epochs", "3",
                  "solver.lr", "0.1", "solver.epochs", "5")
    assert (args.config_file, args.output_dir, args.resume, args.eval_only) == ("a.yaml", "runs/x", True, True)
    # flags first, trailing pairs last: the trailing solver.epochs wins over --epochs when loaded
    assert config_overrides(args, FLAGS) == ["solver.epochs", "3", "output_dir", "runs/x", "solver.lr", "0.1",
                                             "solver.epochs", "5"]
    assert config_overrides(_parse(), FLAGS) == []  # flags not given add nothing


def test_misplaced_flags_and_odd_pairs_are_usage_errors(capsys):
    with pytest.raises(ConfigError, match="--epochs comes after the KEY VALUE overrides"):
        config_overrides(_parse("solver.lr", "0.1", "--epochs", "3"), FLAGS)
    with pytest.raises(ConfigError, match="come in pairs"):
        config_overrides(_parse("solver.lr"), FLAGS)
    assert usage_error("bad thing") == 2
    assert capsys.readouterr().err == "error: bad thing\n"


def test_predict_det_tells_inputs_from_trailing_overrides():
    assert split_overrides(["photos/", "a.jpg", "test.proposals", "100"]) == (["photos/", "a.jpg"],
                                                                             ["test.proposals", "100"])
    assert split_overrides(["IMG_0001.JPG", "model.norm", "GN"]) == (["IMG_0001.JPG"], ["model.norm", "GN"])
    assert split_overrides(["photos/"]) == (["photos/"], [])


def test_one_resume_rule_for_every_program(tmp_path, capsys):
    """The saved config is the base; what a program declares may change, the rest is refused with the reason."""
    from nasnet_zoo.cli import search, train_cls, train_det

    out = tmp_path / "run"
    assert search.main(["--no-progress", "--reward", "oracle", "--backend", "inline", "--children", "4",
                        "--output-dir", str(out)]) == 0
    assert search.main(["--no-progress", "--output-dir", str(out), "--resume", "--children", "6"]) == 0
    capsys.readouterr()
    assert search.main(["--no-progress", "--output-dir", str(out), "--resume", "seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "--resume cannot change seed" in err and "may change: children" in err
    for program in (train_cls, train_det):
        assert program.main(["--output-dir", str(tmp_path / "none"), "--resume"]) == 2
        assert "config.yaml does not exist" in capsys.readouterr().err
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "config.yaml").write_text("solver:\n  lr: 0.1\n")
    assert train_cls.main(["--output-dir", str(tmp_path / "cls"), "--resume", "--lr", "0.2"]) == 2
    assert "--resume cannot change solver.lr" in capsys.readouterr().err
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "config.yaml").write_text("SOLVER:\n  BASE_LR: 0.1\n")
    assert train_det.main(["--output-dir", str(tmp_path / "det"), "--resume", "solver.base_lr", "0.2"]) == 2
    assert "--resume cannot change solver.base_lr" in capsys.readouterr().err
