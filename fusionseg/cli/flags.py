"""Library errors speak in parameter names; the CLI shows them as the verb's flags.

`api.export_model(format="x")` says `format: 'x' is not one of ...` to a notebook user; `fusionseg
export --format x` must say `--format: ...`. The library writes a parameter name either at the start
of a message (`name: ...`) or in backquotes anywhere (``pass `depth_scale` with the file's unit``);
`flag_message` rewrites both into the flag of the verb that was run: a click option whose parameter
name is `name`, or one the verb's module maps it to in its `PARAM_FLAGS` (e.g. `{"size_hw":
"--size"}`). Names the verb has no flag for, and dotted config keys (`data.height_px: ...`, what
`--set` takes), stay as they are.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence

import click

_LEADING_NAME = re.compile(r"^([a-z][a-z0-9_]*)(?=: )")
_QUOTED_NAME = re.compile(r"`([a-z][a-z0-9_]*)`")


def invoked_command(root: click.Group, args: Sequence[str]) -> click.Command:
    """The (sub)command `args` run, found by walking the group's verbs; `root` if none matches."""
    ctx = click.Context(root)
    command: click.Command = root
    for token in args:
        if token.startswith("-"):
            continue
        if not isinstance(command, click.Group):
            break
        sub = command.get_command(ctx, token)
        if sub is None:
            break
        command = sub
    return command


def param_flags(command: click.Command) -> dict[str, str]:
    """Parameter name -> the flag a user types, for every option of `command`, plus its `PARAM_FLAGS`."""
    flags: dict[str, str] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name:
            long_opts = [opt for opt in param.opts if opt.startswith("--")]
            flags[param.name] = (long_opts or param.opts)[0]
            for opt in long_opts:  # `--max-native-megapixels` answers to max_native_megapixels too
                flags.setdefault(opt[2:].replace("-", "_"), opt)
    module = sys.modules.get(getattr(command.callback, "__module__", ""), None)
    extra: Mapping[str, str] = getattr(module, "PARAM_FLAGS", {})
    flags.update(extra)
    return flags


def flag_message(message: str, command: click.Command) -> str:
    """`message` with its leading and backquoted parameter names replaced by `command`'s flags."""
    flags = param_flags(command)
    match = _LEADING_NAME.match(message)
    if match is not None and match.group(1) in flags:
        message = flags[match.group(1)] + message[match.end() :]
    return _QUOTED_NAME.sub(lambda m: flags.get(m.group(1), m.group(0)), message)
