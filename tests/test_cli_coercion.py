"""Option values converted without pydantic equal typer's own conversion, a value typer refuses is refused
with typer's message, and a capture's command line is parsed without importing pydantic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer import BadParameter, _coercion

from esxcap.cli import coercion

CASES: list[tuple[Any, Any]] = [
    (str, "web02"),
    (str, "データベース01"),
    (str, ""),
    (bool, True),
    (int, "1"),
    (int, "-12"),
    (int, "0"),
    (int, 5),
    (int, "007"),
    (int, "1_000"),
    (int, " 3"),
    (int, "+4"),
    (int, "1.5"),
    (int, "x"),
    (float, "0.25"),
    (float, "-2.5"),
    (float, "3"),
    (float, ".5"),
    (float, "1e3"),
    (float, "nan"),
    (float, 2.5),
    (Path, "captures/out.pcapng"),
    (Path, ""),
    (list[str], ("a", "b")),
    (list[int], ("1", "2")),
    (list[int], ("1", "zwei")),
]


def _typer_and_plain(annotation: Any) -> tuple[Any, Any, Any]:
    """(the option's typer parameter, its typer conversion, the plain-first conversion)."""

    def command(value: Any = None) -> None:
        del value

    command.__annotations__["value"] = Annotated[annotation, typer.Option("--value")]
    app = typer.Typer()
    app.command()(command)
    param = next(p for p in typer.main.get_command(app).params if p.name == "value")
    typer_side = _coercion.build_runtime_param(param.type_descriptor)
    coercion.install()
    plain_side = typer.core.build_runtime_param(param.type_descriptor)
    return param, typer_side, plain_side


def _outcome(runtime: Any, value: Any, param: Any) -> tuple[str, Any]:
    try:
        return "value", runtime.coerce(value, param=param, ctx=None)
    except BadParameter as error:
        return "refused", error.message


@pytest.mark.parametrize(("annotation", "value"), CASES)
def test_a_plain_conversion_equals_typers(annotation: Any, value: Any) -> None:
    param, typer_side, plain_side = _typer_and_plain(annotation)
    assert coercion.is_plain(param.type_descriptor)
    assert type(plain_side) is not type(typer_side)
    expected, got = _outcome(typer_side, value, param), _outcome(plain_side, value, param)
    assert repr(got) == repr(expected)  # repr: nan equals nan
    assert type(got[1]) is type(expected[1])


def test_bounded_or_parsed_options_keep_typers_coercion() -> None:
    def command(
        count: Annotated[int, typer.Option("--count", min=1)] = 1,
        size: Annotated[str, typer.Option("--size", parser=str.upper)] = "",
    ) -> None:
        del count, size

    app = typer.Typer()
    app.command()(command)
    params = typer.main.get_command(app).params
    assert not any(coercion.is_plain(p.type_descriptor) for p in params if p.name in ("count", "size"))


def test_a_capture_command_line_is_parsed_without_pydantic(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts: {}\n", encoding="utf-8")
    script = f"""
import sys
import esxcap.cli.capture
from typer.main import get_command
from esxcap.cli import coercion
from esxcap.cli.common import app
coercion.install()
group = get_command(app)
args = ["--host", "esx03", "--vm", "web02", "-c", "1", "-d", "2.5", "-o", "-"]
parent = group.make_context("esxcap", ["-i", {str(inventory)!r}, "capture", *args])
context = group.commands["capture"].make_context("capture", args, parent=parent)
print(parent.params["inventory"], context.params["count"], "pydantic" in sys.modules)
"""
    argv = [sys.executable, "-W", "ignore", "-c", script]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert done.stdout.split() == [str(inventory), "1", "False"]
