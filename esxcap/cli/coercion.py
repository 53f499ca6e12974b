"""Option values converted without pydantic where typer would gain nothing from it.

typer (0.2x) turns every option value into its declared type through a pydantic TypeAdapter: importing
pydantic and building the first adapters costs about 70 ms of every command's start, which a capture
spends before its first packet. Most of esxcap's options are strings, lists of strings, flags and whole
or decimal numbers written plainly (`-c 1`), with no parser and no bounds: those are converted here, to
the same values pydantic gives; a path becomes a Path before typer's own checks (exists, readable...).
Anything else (another type, a parser or min/max/clamp, a value that is not a plain number, so an error
keeps typer's own message) goes to typer's coercion, built only then.

`install` changes nothing where typer has no such coercion layer (`typer.core.build_runtime_param`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

PLAIN_NUMBERS: dict[type, re.Pattern[str]] = {
    int: re.compile(r"-?(0|[1-9][0-9]{0,17})"),
    float: re.compile(r"-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,15})?"),
}
"""Numbers in the form pydantic reads to exactly what int()/float() give; others go to typer."""

NOT_PLAIN = object()


def plain_value(annotation: Any, value: Any) -> Any:
    """`value` converted to `annotation` (str, bool, int, float, Path or a list of them), or NOT_PLAIN."""
    if get_origin(annotation) is list:
        (item_type,) = get_args(annotation) or (Any,)
        if not isinstance(value, list | tuple):
            return NOT_PLAIN
        items = [plain_value(item_type, item) for item in value]
        return NOT_PLAIN if any(item is NOT_PLAIN for item in items) else items
    if (annotation is str and isinstance(value, str)) or (annotation is bool and isinstance(value, bool)):
        return value
    if annotation is Path and isinstance(value, Path):
        return value
    if annotation is Path:
        return Path(value) if isinstance(value, str) and value else NOT_PLAIN
    number = PLAIN_NUMBERS.get(annotation)
    if number is None or isinstance(value, bool):
        return NOT_PLAIN
    if type(value) is annotation:
        return value
    if isinstance(value, str) and number.fullmatch(value):
        return annotation(value)
    return NOT_PLAIN


def is_plain(descriptor: Any) -> bool:
    """Whether a typer parameter declares only what `plain_value` converts."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None:
        return False
    if any(getattr(info, name, None) is not None for name in ("parser", "click_type", "min", "max")):
        return False
    if getattr(info, "clamp", False):
        return False
    annotation = descriptor.annotation
    leaf = get_args(annotation)[0] if get_origin(annotation) is list and get_args(annotation) else annotation
    if annotation is Path:
        return getattr(info, "path_type", None) is None
    return leaf in (str, bool) or leaf in PLAIN_NUMBERS


def install() -> None:
    """Have typer convert plain option values with `plain_value`; other values keep typer's coercion."""
    try:
        from typer import _coercion, _param_types, core
    except ImportError:
        return
    found: Callable[[Any], Any] | None = getattr(core, "build_runtime_param", None)
    if found is None or getattr(found, "plain_first", False):
        return
    typer_build = found

    @dataclass(frozen=True)
    class PlainRuntimeParam(_coercion.RuntimeParam):
        """A plain value converted here; any other goes to the parameter's typer coercion."""

        descriptor: Any

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            converted = plain_value(self.annotation, value)
            if converted is NOT_PLAIN:
                return typer_build(self.descriptor)._coerce_value(value, param=param, ctx=ctx)
            if isinstance(converted, Path):  # typer's own checks (exists, readable...) on a ready Path
                info = self.parameter_info
                return _param_types.coerce_cli_path(converted, info, path_type=Path, param=param, ctx=ctx)
            return converted

    def build_runtime_param(descriptor: Any) -> Any:
        if not is_plain(descriptor):
            return typer_build(descriptor)
        info, annotation = descriptor.parameter_info, descriptor.annotation
        return PlainRuntimeParam(parameter_info=info, annotation=annotation, descriptor=descriptor)

    setattr(build_runtime_param, "plain_first", True)  # noqa: B010 (a function has no such attribute)
    setattr(core, "build_runtime_param", build_runtime_param)  # noqa: B010 (typer does not export it)
