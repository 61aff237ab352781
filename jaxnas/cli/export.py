"""``jaxnas export``: the best model of a run as a torch.export program or state dict."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from jaxnas.cli.usage import UsageError
from jaxnas.search import SearchError, atomic_write, load


def add_parser(commands) -> None:
    export = commands.add_parser("export", help="export the best model of a run")
    export.add_argument("dir")
    export.add_argument("--torch", metavar="FILE",
                        help="write a self-contained torch.export program (torch.export.load, "
                        "no jaxnas needed): raw inputs to logits (e.g. best.pt2)")
    export.add_argument("--state-dict", metavar="FILE",
                        help="write the state dict of jaxnas.export.seed_module's network")
    export.set_defaults(run=_export)


def _export(args: argparse.Namespace) -> None:
    if args.torch is None and args.state_dict is None:
        raise UsageError("give --torch FILE (a torch.export program) and/or --state-dict FILE")
    try:
        predictor = load(args.dir)
    except SearchError as error:
        raise UsageError(str(error)) from None
    try:
        import torch

        from jaxnas import export
    except ImportError:
        raise UsageError("exporting to PyTorch needs torch (pip install torch)") from None
    model = (predictor.space, predictor.arch, predictor.params, predictor.input_shape,
             predictor.num_classes, predictor.model_config)
    if args.torch is not None:
        program = export.torch_program(*model, predictor.mean, predictor.std)
        _write(Path(args.torch), lambda buffer: torch.export.save(program, buffer))
        print(f"wrote a torch.export program to {args.torch}: "
              f"torch.export.load({args.torch!r}).module() maps raw inputs to logits")
    if args.state_dict is not None:
        state = export.state_dict(*model)
        _write(Path(args.state_dict), lambda buffer: torch.save(state, buffer))
        print(f"wrote {len(state)} tensors to {args.state_dict} "
              "(the state dict of jaxnas.export.seed_module)")


def _write(target: Path, save) -> None:
    """Writes what ``save(buffer)`` writes into a memory buffer to ``target``, whole or
    not at all."""
    buffer = io.BytesIO()
    save(buffer)
    atomic_write(target, buffer.getvalue())
