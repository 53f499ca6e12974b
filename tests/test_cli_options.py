"""The command line's options are declared once: `capture` and every recipe refuse the same bad values
with the same message, and exit with the same code for the same situation (a host that cannot be
reached, in a real capture and in --dry-run)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from clirun import esxcap, isolated_env
from conftest import FAST_TOPOLOGY

from esxcap.cli.exitcodes import ExitCode, outcome_code


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


BAD_VALUES = [
    (("--max-bytes", "0"), "--max-bytes 0"),
    (("-c", "0"), "--count 0"),
    (("-c", "99999999999"), "--count 99999999999"),
    (("-d", "nan"), "--duration nan"),
    (("-d", "inf"), "--duration inf"),
    (("-d", "1e20"), "--duration 1e+20"),
    (("-d", "-1"), "--duration -1"),
    (("--parallel", "0"), "--parallel must be at least 1"),
]


@pytest.mark.parametrize(("args", "said"), BAD_VALUES)
def test_capture_and_recipes_refuse_the_same_values(fast_sim, env, args: tuple[str, ...], said: str) -> None:
    inventory = str(fast_sim.sim.inventory_path)
    commands = [("capture", "--vm", "m1"), ("recipe", "vm-to-vm", "m1", "n2"), ("recipe", "dvfilter", "n2")]
    for command in commands:
        result = esxcap("-i", inventory, *command, *args, "--dry-run", env=env)
        assert result.code == ExitCode.USAGE and said in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("dry_run", [True, False])
def test_capture_and_recipe_agree_when_a_searched_host_is_down(make_sim, env, tmp_path, dry_run) -> None:
    st = make_sim(copy.deepcopy(FAST_TOPOLOGY))
    st.call(st.sim.stop_host("old"))
    inventory = str(st.sim.inventory_path)
    tail = ("--dry-run",) if dry_run else ("-d", "1", "-o", str(tmp_path))
    capture = esxcap("-i", inventory, "capture", "--vm", "m1", "--vm", "n2", *tail, env=env)
    recipe = esxcap("-i", inventory, "recipe", "vm-to-vm", "m1", "n2", *tail, env=env)
    assert capture.code == recipe.code == ExitCode.OK, (capture.stderr, recipe.stderr)
    for result in (capture, recipe):
        assert "old could not be searched" in result.stderr


def test_a_vm_on_an_unreachable_host_is_not_reported_as_missing_alone(make_sim, env) -> None:
    st = make_sim(copy.deepcopy(FAST_TOPOLOGY))
    st.call(st.sim.stop_host("new"))
    result = esxcap("-i", str(st.sim.inventory_path), "capture", "--vm", "n2", "--dry-run", env=env)
    assert result.code == ExitCode.USAGE
    assert "not searched (unreachable): new" in result.stderr


def test_outcome_codes() -> None:
    assert outcome_code(0, 3) == ExitCode.OK
    assert outcome_code(1, 3) == ExitCode.PARTIAL
    assert outcome_code(3, 3) == ExitCode.ALL_FAILED
    assert outcome_code(0, 3, interrupted=True) == ExitCode.INTERRUPTED
