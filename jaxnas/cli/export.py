"""``jaxnas export``: the best model of a run as a torch.export program, a state dict, an
ONNX model or a Flax module."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from jaxnas.cli.usage import UsageError
from jaxnas.search import SearchError, atomic_write, load

_TORCH_HINT = "exporting to PyTorch needs torch (pip install torch)"


def add_parser(commands) -> None:
    export = commands.add_parser(
        "export", help="export the best model of a run (PyTorch, ONNX, Flax)",
        description="Export the best model of a run directory. Each export holds only the "
        "architecture's live nodes and runs batch norm with its running statistics; the "
        "--torch, --onnx and --flax exports map raw inputs (B, *input_shape), normalised "
        "inside with the run's mean and std, to logits.")
    export.add_argument("dir", help="a finished run directory (jaxnas search --out DIR)")
    export.add_argument("--torch", metavar="FILE",
                        help="write a self-contained torch.export program (torch.export.load, "
                        "no jaxnas needed): raw inputs to logits (e.g. best.pt2)")
    export.add_argument("--state-dict", metavar="FILE",
                        help="write the state dict of jaxnas.export.seed_module's network "
                        "(inputs already normalised)")
    export.add_argument("--onnx", metavar="FILE",
                        help="write an ONNX model with a dynamic batch size: input 'x', raw "
                        "inputs (batch, *input_shape), output 'logits' (e.g. best.onnx; "
                        "onnxruntime runs it; needs pip install 'jaxnas[onnx]')")
    export.add_argument("--flax", metavar="OUTDIR",
                        help="write OUTDIR/model.py and OUTDIR/weights.msgpack: a Flax NNX "
                        "module that jax and flax load without jaxnas (import model; net = "
                        "model.load(); logits = net(x))")
    export.set_defaults(run=_export)


def _export(args: argparse.Namespace) -> None:
    if all(target is None for target in (args.torch, args.state_dict, args.onnx, args.flax)):
        raise UsageError("give --torch FILE, --state-dict FILE, --onnx FILE and/or "
                         "--flax OUTDIR")
    if args.flax is not None and Path(args.flax).exists() and not Path(args.flax).is_dir():
        raise UsageError(f"--flax {args.flax}: exists and is not a directory")
    try:
        predictor = load(args.dir)
    except SearchError as error:
        raise UsageError(str(error)) from None
    from jaxnas import export

    model = (predictor.space, predictor.arch, predictor.params, predictor.input_shape,
             predictor.num_classes, predictor.model_config)
    # Every file is made before any is written: a missing package writes nothing.
    files: dict[Path, bytes] = {}
    messages = []
    if args.onnx is not None:
        try:
            onnx = export.onnx_model(*model, predictor.mean, predictor.std)
        except ImportError:
            raise UsageError(export.ONNX_HINT) from None
        files[Path(args.onnx)] = onnx.SerializeToString()
        messages.append(f"wrote an ONNX model to {args.onnx}: input 'x' (raw inputs, any "
                        "batch size) to output 'logits'")
    if args.torch is not None or args.state_dict is not None:
        _torch_files(args, export, model, predictor, files, messages)
    if args.flax is not None:
        outdir = Path(args.flax)
        made = export.flax_files(*model, predictor.mean, predictor.std)
        for name, payload in made.items():
            files[outdir / name] = payload
        messages.append(f"wrote a Flax NNX module to {outdir}/ (model.py, weights.msgpack): "
                        "with jax and flax, `import model; model.load()` maps raw inputs "
                        "to logits")
    for target, payload in files.items():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot create {target.parent}: {error.strerror}") from None
        try:
            atomic_write(target, payload)
        except OSError as error:
            raise UsageError(f"cannot write {target}: {error.strerror}") from None
    print("\n".join(messages))


def _torch_files(args, export, model, predictor, files, messages) -> None:
    try:
        import torch
    except ImportError:
        raise UsageError(_TORCH_HINT) from None
    if args.torch is not None:
        program = export.torch_program(*model, predictor.mean, predictor.std)
        files[Path(args.torch)] = _saved(lambda buffer: torch.export.save(program, buffer))
        messages.append(f"wrote a torch.export program to {args.torch}: "
                        f"torch.export.load({args.torch!r}).module() maps raw inputs to logits")
    if args.state_dict is not None:
        state = export.state_dict(*model)
        files[Path(args.state_dict)] = _saved(lambda buffer: torch.save(state, buffer))
        messages.append(f"wrote {len(state)} tensors to {args.state_dict} "
                        "(the state dict of jaxnas.export.seed_module)")


def _saved(save) -> bytes:
    """What ``save(buffer)`` writes into a memory buffer."""
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()
