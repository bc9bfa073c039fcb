"""`--config FILE`: a command's options read from a TOML settings file.

The file holds top-level keys named exactly like the command's long options without the
leading dashes (`population = 100`, `quality-steps = 50`, `data-dir = "/data/cifar"`), with
TOML values of the option's type; a comma-separated option may be a TOML array
(`mutations = ["node", "op"]`). The values become the command's defaults (click's
`default_map`), so an option given on the command line overrides the file; what happens to
them next is what happens to the same flags (for `evonorm search`: validation, and on
resume the same conflict check against the stored search). Every problem (no such file,
not TOML, an unknown key, a wrong type) is a `ConfigError` raised while the command line
is parsed, before the command runs: exit 2, nothing written. See docs/config.md.
"""

from __future__ import annotations

import difflib
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import click

from evonorm_search.cli.options import GroupedOption, option
from evonorm_search.config import ConfigError

# A settings file is a few hundred bytes: refuse to read anything far larger.
MAX_SETTINGS_FILE_BYTES = 1_000_000
CONFIG_OPTION_NAME = "config"


def config_file_option(group: str) -> Any:
    """The `--config FILE` option of a `GroupedCommand`, listed under `group`."""
    return option(
        f"--{CONFIG_OPTION_NAME}", group=group, metavar="FILE", is_eager=True,
        expose_value=False, callback=_apply_settings_file,
        help="TOML settings file: top-level keys named like these options, without the "
             "dashes (population = 100, mutations = [\"node\", \"op\"]); options given "
             "here override it (docs/config.md).",
    )


def _apply_settings_file(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    settings = read_settings_file(Path(value).expanduser(), ctx.command)
    ctx.default_map = {**(ctx.default_map or {}), **settings}


def setting_key(param: click.Option) -> str:
    """The key of an option in a settings file: its long name without the dashes."""
    return next(name for name in param.opts if name.startswith("--"))[2:]


def settable_options(command: click.Command) -> dict[str, click.Option]:
    """Settings-file key -> option, for every option of `command` a file may set (each
    value-taking long option but --config itself)."""
    return {
        setting_key(param): param for param in command.params
        if isinstance(param, click.Option) and param.expose_value
        and any(name.startswith("--") for name in param.opts)
        and setting_key(param) != CONFIG_OPTION_NAME
    }


def read_settings_file(path: Path, command: click.Command) -> dict[str, Any]:
    """Parameter name -> value (as click takes it) for each key of the settings file at
    `path`; ConfigError naming the file and the problem."""
    options = settable_options(command)
    values: dict[str, Any] = {}
    for key, value in _parse(path).items():
        param = options.get(key)
        if param is None:
            raise ConfigError(_unknown_key(key, value, options, path))
        values[str(param.name)] = _option_value(param, key, value, path)
    return values


def _parse(path: Path) -> dict[str, Any]:
    try:
        if path.is_dir():
            raise ConfigError(f"--config {str(path)!r} is a directory: give a TOML settings file")
        if path.stat().st_size > MAX_SETTINGS_FILE_BYTES:
            raise ConfigError(f"--config {str(path)!r} is larger than {MAX_SETTINGS_FILE_BYTES} "
                              "bytes, too large for a settings file: give a TOML settings file")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no settings file at {str(path)!r}: check the path given to "
                          "--config") from None
    except OSError as error:
        raise ConfigError(f"cannot read the settings file {str(path)!r} ({error.strerror}): "
                          "check its permissions") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"the settings file {str(path)!r} is not UTF-8 text: give a TOML "
                          "file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"the settings file {str(path)!r} is not valid TOML: {error}; fix "
                          "it there (https://toml.io)") from None


def _unknown_key(key: str, value: Any, options: dict[str, click.Option], path: Path) -> str:
    dashed = key.replace("_", "-")
    close = ([dashed] if dashed in options
             else difflib.get_close_matches(dashed, list(options), n=3, cutoff=0.6))
    if key == CONFIG_OPTION_NAME:
        hint = "a settings file cannot name another one"
    elif close:
        hint = f"did you mean {' or '.join(repr(name) for name in close)}?"
    elif isinstance(value, dict):
        hint = ("settings are top-level keys named like the options, without [sections] "
                "(e.g. steps = 200, not steps under [train])")
    else:
        hint = "the keys are the long option names without the dashes, see --help"
    return f"unknown setting {key!r} in {str(path)!r}: {hint}"


def _toml_type(value: Any) -> str:
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
             (list, "an array"), (dict, "a table"), (datetime, "a date-time"),
             (date, "a date"), (time, "a time"))
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _option_value(param: click.Option, key: str, value: Any, path: Path) -> Any:
    """`value` checked against the option's type; a comma-list array joined by commas."""
    comma_list = isinstance(param, GroupedOption) and param.comma_list
    where = f"{key} in {str(path)!r}"
    got = f"got {value!r} ({_toml_type(value)})"
    if isinstance(value, dict):
        raise ConfigError(f"{where} is a table; settings are top-level keys named like the "
                          f"options, e.g. {key} = ... without a [{key}] section")
    kind = param.type
    if comma_list and isinstance(value, list):
        if not value or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where} must be a non-empty array of strings (or one "
                              f"comma-separated string), {got}")
        return ",".join(value)
    if param.is_flag or isinstance(kind, click.types.BoolParamType):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, {got}")
        return value
    if isinstance(kind, click.types.IntParamType):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, {got}")
        return value
    if isinstance(kind, click.types.FloatParamType):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, {got}")
        return float(value)
    if not isinstance(value, str):
        what = "a string or an array of strings" if comma_list else "a string"
        raise ConfigError(f"{where} must be {what}, {got}")
    if isinstance(kind, click.Choice) and value not in kind.choices:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, kind.choices))}, {got}")
    return value
