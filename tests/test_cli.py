"""``nasnet-zoo COMMAND``: every program of ``nasnet_zoo.cli`` is reachable from the installed package, and each
``tools/*.py`` script of the checkout is that same program (tests/test_wheel.py runs them from a wheel)."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from nasnet_zoo.__main__ import PROGRAMS, main

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.mark.parametrize("command", sorted(PROGRAMS))
def test_each_program_answers_help_under_its_command_name(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: nasnet-zoo {command}")


@pytest.mark.parametrize("command", sorted(PROGRAMS))
def test_the_checkout_script_is_the_packaged_program(command: str) -> None:
    module = PROGRAMS[command][0]
    script = TOOLS / f"{module.rsplit('.', 1)[1]}.py"
    packaged = __import__(module, fromlist=["main"]).main
    assert runpy.run_path(str(script), run_name="wrapper")["main"] is packaged


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in [*PROGRAMS, "list", "info"])
