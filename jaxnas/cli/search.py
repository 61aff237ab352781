"""``jaxnas search``: run a search, with a progress line and optionally its live page."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from jaxnas import spaces, strategies
from jaxnas.cli.serve import start_server, url_of
from jaxnas.cli.usage import UsageError, positive_int
from jaxnas.search import SearchConfig, SearchError, SettingError, flag_name, flag_of, tracking


def add_parser(commands) -> None:
    default = SearchConfig()
    run = commands.add_parser(
        "search", help=f"run a search (default: {default.strategy} over the {default.space} "
        f"space on {default.dataset})",
        description="Search architectures, retrain the best on train+val and test it once.")
    _add_config_options(run)
    run.add_argument("--strategy-option", action="append", metavar="KEY=VALUE",
                     help="an option of the strategy's factory, e.g. tournament_size=3 "
                     "(repeatable; values are read as JSON where they parse)")
    run.add_argument("--initial", nargs="+", metavar="FILE",
                     help="architectures to evaluate first, from which the strategy starts: "
                     "files of architecture JSON (RUN/best/arch.json, a list, NAS-Bench-101 "
                     "{matrix, ops}) or of NAS-Bench-201 strings, one per line, or such "
                     "strings themselves")
    run.add_argument("--search-hp", action="append", metavar="NAME=SPEC",
                     help="search a training number with the architecture, each candidate "
                     "at its own: NAME=LOW:HIGH, NAME=LOW:HIGH:log or NAME=A,B,C (names: "
                     "learning_rate, weight_decay, momentum; repeatable), e.g. "
                     "learning_rate=1e-4:3e-2:log")
    run.add_argument("--out", help="new run directory for the log, checkpoint, plots and model")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--serve", action="store_true",
                     help="serve the run's live page on 127.0.0.1 while the search runs")
    run.add_argument("--port", type=int, help="port of --serve (default 8765; 0: any free)")
    run.add_argument("--compile-cache", metavar="DIR|off",
                     help="JAX's persistent compilation cache (default: $JAXNAS_COMPILE_CACHE, "
                     "else ~/.cache/jaxnas/xla); 'off' turns it off")
    run.add_argument("--track", nargs=2, metavar=("KIND", "DIR"),
                     help="log every evaluated candidate (architecture summary and metrics, "
                     "and the progress for an experiment tracker: KIND is tensorboard (DIR "
                     "its log directory, in the HParams format: new, or the one this run "
                     "tracked before; pip install 'jaxnas[track]') or mlflow (DIR an MLflow "
                     "store that searches share; pip install 'jaxnas[mlflow]'); --resume "
                     "with the same DIR appends")
    run.set_defaults(run=_search)


class _Progress:
    """One updating line on a terminal, one plain line per generation otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def __call__(self, p: dict) -> None:
        if self.quiet:
            return
        left = ("" if p["minutes_left"] is None
                else f" | {p['minutes_left']:.1f} min left")
        line = (f"gen {p['generation']:3d} | evals {p['evaluations']}/{p['budget_evals']} | "
                f"{p['evals_per_s']:.2f} evals/s | best val loss {p['best_val_loss']:.4f} "
                f"acc {p['best_val_acc']:.3f}{left}")
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def _search(args: argparse.Namespace) -> None:
    from jaxnas.search import search

    if args.resume is not None and args.out is not None:
        raise UsageError("give either --out (a new run) or --resume (an existing run)")
    settings = {name: getattr(args, name) for name in _config_fields()
                if getattr(args, name) is not None}
    options = _strategy_options(args.strategy_option or [])
    if args.search_hp:
        settings["hyperparameters"] = _searched_numbers(args.search_hp)
    if args.resume is not None and (settings or options or args.initial):
        raise UsageError("--resume continues a run with its own settings; give no other options")
    server = None
    if args.port is not None and not args.serve:
        raise UsageError("--port is the port of --serve; give --serve too")
    if args.track is not None and args.track[0] not in tracking.KINDS:
        raise UsageError(f"--track takes {' or '.join(tracking.KINDS)} and a directory; got "
                         f"{args.track[0]!r}")
    if args.serve:
        if args.out is None and args.resume is None:
            raise UsageError("--serve needs a run directory: give --out or --resume")
        server = start_server(Path(args.out or args.resume), "127.0.0.1",
                              8765 if args.port is None else args.port)
        print(f"watch the search at {url_of(server)}", file=sys.stderr, flush=True)
    for name, argument in (("dataset", "data"), ("budget_evals", "budget")):
        if name in settings:
            settings[argument] = settings.pop(name)
    progress = _Progress(args.quiet)
    try:
        result = search(out=args.out or args.resume, resume=args.resume is not None,
                        progress=progress, compile_cache=args.compile_cache,
                        strategy_options=options, initial=args.initial or (),
                        track=None if args.track is None else tuple(args.track), **settings)
    except SettingError as error:
        raise UsageError(error.named(flag_name)) from None
    except SearchError as error:
        raise UsageError(str(error)) from None
    finally:
        progress.close()
        if server is not None:
            server.shutdown()
            server.server_close()
    print(result.summary())


def _strategy_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs as a dict; values are read as JSON (numbers, true/false,
    lists) where they parse, else kept as strings."""
    options = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise UsageError(f"--strategy-option takes KEY=VALUE; got {pair!r}")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = {"True": True, "False": False}.get(text, text)
    return options


def _searched_numbers(pairs: list[str]) -> dict[str, str]:
    """``--search-hp NAME=SPEC`` pairs as {name: spec} (the specs are checked by the
    search)."""
    searched = {}
    for pair in pairs:
        name, equals, spec = pair.partition("=")
        if not equals or not name or not spec:
            raise UsageError(f"--search-hp takes NAME=LOW:HIGH[:log] or NAME=A,B,C; got {pair!r}")
        if name in searched:
            raise UsageError(f"--search-hp names {name} twice")
        searched[name] = spec
    return searched


def _config_fields() -> dict[str, dataclasses.Field]:
    """The ``SearchConfig`` fields that are plain options of ``jaxnas search``, by name."""
    return {field.name: field for field in dataclasses.fields(SearchConfig)
            if field.name not in ("strategy_options", "initial", "hyperparameters")}


def _add_config_options(run: argparse.ArgumentParser) -> None:
    """An option per ``SearchConfig`` field, with its type, choices and help."""
    hints = typing.get_type_hints(SearchConfig)
    listed = {"space": spaces.names(), "strategy": strategies.names()}
    for name, field in _config_fields().items():
        kind = next(t for t in typing.get_args(hints[name]) or (hints[name],)
                    if t is not type(None))
        choices = field.metadata["choices"] or listed.get(name)
        kind = positive_int if field.metadata["minimum"] == 1 else kind
        if kind is bool:
            run.add_argument(flag_of(field), dest=name, action="store_true", default=None,
                             help=field.metadata["help"])
            continue
        default = "" if field.default is None else f" (default {field.default})"
        run.add_argument(flag_of(field), dest=name, type=kind, choices=choices,
                         help=field.metadata["help"] + default)
