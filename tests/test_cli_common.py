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
    with pytest.warns(FutureWarning, match="SOLVER.BASE_LR -> solver.base_lr"):  # saved by an older version
        assert train_det.main(["--output-dir", str(tmp_path / "det"), "--resume", "solver.base_lr", "0.2"]) == 2
    assert "--resume cannot change solver.base_lr" in capsys.readouterr().err


SHARED = ["--config-file", "a.yaml", "--output-dir", "runs/x", "--resume", "--eval-only", "--train-images", "i",
          "--train-ann", "a.json", "--val-images", "v", "--val-ann", "b.json", "--weights", "w.pth"]


def test_both_detection_engines_take_the_shared_flags_spelled_the_same_way():
    from nasnet_zoo.cli import train_det

    torchvision = train_det.parse_args([*SHARED, "solver.base_lr", "0.1"])
    d2 = train_det.d2_argument_parser().parse_args([*SHARED, "--num-gpus", "2", "SOLVER.BASE_LR", "0.1"])
    names = ("config_file", "output_dir", "resume", "eval_only", "train_images", "train_ann", "val_images",
             "val_ann", "weights")
    assert [getattr(d2, n) for n in names] == [getattr(torchvision, n) for n in names]
    assert (d2.num_gpus, d2.num_machines, d2.machine_rank, d2.dist_url) == (2, 1, 0, "auto")
    # the one flag-to-key mapping, here to detectron2's CfgNode keys; trailing pairs last
    assert config_overrides(d2, train_det.D2_FLAG_KEYS) == ["OUTPUT_DIR", "runs/x", "MODEL.WEIGHTS", "w.pth",
                                                            "SOLVER.BASE_LR", "0.1"]
    with pytest.raises(ConfigError, match="--num-gpus comes after"):
        config_overrides(train_det.d2_argument_parser().parse_args(["SOLVER.BASE_LR", "0.1", "--num-gpus", "2"]),
                         train_det.D2_FLAG_KEYS)
    assert train_det.engine(["--output-dir", "x", "--engine", "detectron2", "--num-gpus", "2"]) == "detectron2"
    assert train_det.engine(["--output-dir", "x"]) == "torchvision"


def test_detectron2_flags_reach_the_detectron2_engine(capsys):
    """``--num-gpus`` is detectron2's flag: train-det hands it over instead of refusing it as unknown."""
    from nasnet_zoo.cli import train_det
    try:
        import detectron2  # noqa: F401
    except ImportError:
        assert train_det.main(["--engine", "detectron2", "--num-gpus", "2"]) == 2
        err = capsys.readouterr().err
        assert "needs detectron2" in err and "unrecognized" not in err
    else:
        assert train_det.main(["--engine", "detectron2", "--num-gpus", "64"]) == 2
        assert "--num-gpus 64 needs that many GPUs" in capsys.readouterr().err


def test_export_onnx_starts_from_the_one_parser(capsys, tmp_path):
    from nasnet_zoo.cli import export_onnx

    args = export_onnx.parse_args(["--config-file", "run.yaml", "--detector", "d", "--checkpoint", "c.pth",
                                   "--output", "d.onnx", "test.proposals", "100"])
    assert (args.config_file, args.opts) == ("run.yaml", ["test.proposals", "100"])
    for flag in ("--resume", "--output-dir"):  # no run folder: the flags are left out, not faked
        with pytest.raises(SystemExit) as exit_:
            export_onnx.parse_args(["--model", "m", "--output", "m.onnx", flag, "x"])
        assert exit_.value.code == 2
    capsys.readouterr()
    out = str(tmp_path / "m.onnx")
    cases = {("--detector", "d", "--output", out): "error: --detector needs --checkpoint",
             ("--model", "nasnet_a_cifar", "--output", out, "test.proposals", "1"): "apply to --detector only",
             ("--detector", "d", "--checkpoint", "c.pth", "--output", out, "test.proposals", "1", "--verbose"):
                 "--verbose comes after the KEY VALUE overrides",
             ("--detector", "d", "--checkpoint", "c.pth", "--output", out, "test.proposals"): "come in pairs"}
    for argv, message in cases.items():
        assert export_onnx.main(list(argv)) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("error: ") and err.count("\n") == 1, err
