"""How the commands present themselves: workflow order, option panels, metavars, defaults, messages, `--quiet`.

Every command is registered on `App`, which builds it as a `Command`; `Command` lays out the options it was given
(the tables below), so a command module declares what an option means and this module how --help shows it.
Choices made on purpose:
- A `show_default` string is shown as `[default: S]` (Typer would write `[default: (S)]`).
- Numbers that fail to parse say "is not a valid whole number / number" instead of "int range" / "float".
- `-q, --quiet` is added to every command here; it sets `common.QUIET`, which `say` and the progress display honour.
"""

from __future__ import annotations

import copy

import typer
from typer import _click as click
from typer._types import TyperChoice
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

WORKFLOW = ("train", "sample", "eval", "inspect", "info")  # the order commands are listed in

MODEL, TRAINING, BOUNDS, VALIDATION, OUTPUT, COMPUTE = (
    "Model", "Training", "Run length", "Validation", "Output and checkpoints", "Compute")
TEXT, SAMPLING, SCORING, PRINTED = "Text", "Sampling", "Scoring", "Output"
PANEL_ORDER = (None, MODEL, TEXT, SAMPLING, SCORING, TRAINING, BOUNDS, VALIDATION, OUTPUT, PRINTED, COMPUTE)
PANELS = {  # command -> option -> panel; options not named stay under "Options" (--help, --quiet)
    "train": {
        "init_from": MODEL, "cell": MODEL, "hidden": MODEL, "layers": MODEL, "embed": MODEL, "dropout": MODEL,
        "include": TEXT, "encoding": TEXT,
        "batch": TRAINING, "seq": TRAINING, "lr": TRAINING, "optimizer": TRAINING, "momentum": TRAINING,
        "weight_decay": TRAINING, "clip": TRAINING, "schedule": TRAINING, "warmup": TRAINING, "seed": TRAINING,
        "steps": BOUNDS, "epochs": BOUNDS, "max_time": BOUNDS, "patience": BOUNDS,
        "val_frac": VALIDATION, "eval_every": VALIDATION, "val_chars": VALIDATION,
        "out": OUTPUT, "force": OUTPUT, "resume": OUTPUT, "checkpoint_every": OUTPUT,
        "dtype": COMPUTE, "threads": COMPUTE, "engine": COMPUTE, "device": COMPUTE, "cache_dir": COMPUTE,
    },
    "sample": {
        "checkpoint": MODEL,
        "prefix": TEXT, "length": TEXT, "num_samples": TEXT, "sep": TEXT, "stop": TEXT, "unknown": TEXT,
        "exclude": TEXT, "unique": TEXT,
        "temperature": SAMPLING, "top_k": SAMPLING, "top_p": SAMPLING, "seed": SAMPLING, "beam": SAMPLING,
    },
    "eval": {
        "checkpoint": MODEL, "unknown": TEXT, "cache_dir": TEXT, "include": TEXT, "encoding": TEXT, "batch": SCORING,
        "as_json": PRINTED, "show": PRINTED, "show_chars": PRINTED,
    },
    "inspect": {
        "checkpoint": MODEL, "unknown": TEXT, "cache_dir": TEXT, "chars": TEXT, "encoding": TEXT,
        "top": PRINTED, "as_json": PRINTED, "unit": PRINTED, "html": PRINTED, "threads": COMPUTE,
    },
}
METAVARS = {  # option -> metavar, where the option does not name its own
    "out": "PATH", "checkpoint": "PATH", "hidden": "H", "layers": "L", "embed": "D", "dropout": "P", "batch": "B",
    "seq": "T", "lr": "LR", "momentum": "M", "weight_decay": "WD", "clip": "NORM", "warmup": "N", "steps": "N",
    "epochs": "E", "max_time": "DURATION", "val_frac": "F", "eval_every": "N", "patience": "K",
    "checkpoint_every": "TIME", "seed": "S", "threads": "N", "device": "DEVICE", "limit": "N",
    "val_chars": "N", "init_from": "CHECKPOINT",
}
NUMBER_NAMES = {click.types.IntParamType: "whole number", click.types.IntRange: "whole number",
                click.types.FloatParamType: "number", click.types.FloatRange: "number"}


def _quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    from charrnn.cli import common

    common.QUIET = bool(value)
    return value


def quiet_option() -> TyperOption:
    """`-q, --quiet`: only errors on stderr. Eager, so it holds before any other option is processed."""
    return TyperOption(param_decls=["-q", "--quiet"], is_flag=True, default=False, expose_value=False,
                       is_eager=True, callback=_quiet, help="Errors only on stderr: no progress, notes or summary.")


def _present(command: str, param: click.Parameter) -> None:
    """Panel, metavar, default and number messages of one parameter of `command`."""
    name = param.name or ""
    if isinstance(param, TyperArgument):
        param.metavar = param.metavar or name.upper()
        if type(param.type) is click.types.StringParamType:
            param.type = _Plain()
        return
    if not isinstance(param, TyperOption):
        return
    param.rich_help_panel = param.rich_help_panel or PANELS.get(command, {}).get(name)
    if isinstance(param.type, TyperChoice):
        param.metavar = param.metavar or "|".join(map(str, param.type.choices))
    elif param.metavar is None and name in METAVARS:
        param.metavar = METAVARS[name]
    friendly = NUMBER_NAMES.get(type(param.type))
    if friendly:
        param.type = copy.copy(param.type)  # INT and FLOAT are shared instances
        param.type.name = friendly
    if isinstance(param.show_default, str):  # shown plain, in the same dim style as a real default
        shown = param.show_default.replace("[", "\\[")
        param.help = f"{param.help or ''} [dim]\\[default: {shown}][/dim]".strip()
        param.show_default = False


class _Plain(click.types.StringParamType):
    """A text argument whose help row shows its name only (Typer would add `<str>`)."""

    def get_metavar(self, param, ctx) -> str:
        return ""


class Command(TyperCommand):
    """A command laid out by the tables above, with `-q, --quiet`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not any(p.name == "quiet" for p in self.params):
            self.params.append(quiet_option())
        for param in self.params:
            _present(self.name or "", param)
        order = {panel: i for i, panel in enumerate(PANEL_ORDER)}  # --help shows the panels in this order
        self.params.sort(key=lambda p: order.get(getattr(p, "rich_help_panel", None), 0))

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        """`charrnn train [OPTIONS] CORPUS`: Typer writes a required argument as `{CORPUS}`."""
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in super().collect_usage_pieces(ctx)]


class Group(TyperGroup):
    """The `charrnn` group: commands listed in workflow order (train, sample, eval, info), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(WORKFLOW)}
        return sorted(self.commands, key=lambda name: rank.get(name, len(WORKFLOW)))


class App(typer.Typer):
    """typer.Typer whose commands are `Command`s unless a command asks for another class."""

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or Command, **kwargs)
