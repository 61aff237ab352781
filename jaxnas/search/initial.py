"""The architectures a search evaluates first: ``--initial`` files and ``initial=`` items.

Accepted, each checked against the run's space:

* a jaxnas architecture JSON object (``jaxnas.arch.to_json``: the ``arch`` of a
  ``log.jsonl`` line, or ``best/arch.json``, whose ``space`` must be the run's);
* a NAS-Bench-201 string such as ``|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|``
  (``nasbench201`` space);
* a NAS-Bench-101 spec, ``{"matrix": [[0, 1, ...], ...], "ops": ["input", ...,
  "output"]}`` (``nasbench101`` space);
* a file holding one of these objects, a JSON list of them (and of NAS-Bench-201
  strings), or NAS-Bench-201 strings one per line;
* from Python also ``Arch`` objects (one or a population) and ``(matrix, ops)``
  pairs.

Every problem is a ``SearchError`` of one line naming the file (and item or line)
or the item.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnas.arch import (
    NB101_OPS,
    NB201_ADJ,
    NB201_OPS,
    Arch,
    ArchError,
    from_json,
    nb101_to_arch,
    nb201_from_str,
    stack,
    to_json,
    unstack,
)
from jaxnas.search.config import SearchError
from jaxnas.spaces import Space


def read_initial(items: Sequence[Any], space: Space) -> tuple[dict, ...]:
    """The JSON forms (``to_json``) of the architectures ``items`` name, in order.

    Args:
      items: files (paths), NAS-Bench-201 strings, architecture JSON objects,
        ``Arch`` objects and ``(matrix, ops)`` pairs; see the module docstring.
      space: the run's space; every architecture must be valid in it.

    Raises:
      SearchError: one line naming the first bad file, item or line.
    """
    if isinstance(items, str | os.PathLike | Arch | dict):
        items = [items]
    archs: list[tuple[str, Arch]] = []
    for index, item in enumerate(items):
        archs.extend(_item(item, f"initial[{index}]", space))
    forms = []
    for label, arch in archs:
        try:
            space.validate(arch)
        except ArchError as error:
            raise SearchError(f"{label}: not an architecture of the {space.name} space: "
                              f"{error}") from None
        forms.append(to_json(arch, space.op_names))
    return tuple(forms)


def initial_population(forms: Sequence[dict], space: Space) -> Arch:
    """The recorded JSON forms (``SearchConfig.initial``) as one population."""
    archs = []
    for index, form in enumerate(forms):
        try:
            arch = from_json(form, space.op_names)
            space.validate(arch)
        except ArchError as error:
            raise SearchError(f"initial architecture {index} of the run: {error}") from None
        archs.append(arch)
    return stack(archs)


def _item(item: Any, label: str, space: Space) -> list[tuple[str, Arch]]:
    """(label, arch) of each architecture one item names."""
    if isinstance(item, Arch):
        if np.ndim(item.ops) == 2:
            return [(f"{label} member {j}", arch) for j, arch in enumerate(unstack(item))]
        return [(label, Arch(adj=np.asarray(item.adj), ops=np.asarray(item.ops)))]
    if isinstance(item, os.PathLike) or (isinstance(item, str) and not item.startswith("|")):
        return _file(os.fspath(item), space)
    if isinstance(item, str):
        return [(repr(item), _nb201(item, repr(item), space))]
    if isinstance(item, dict):
        return [(label, _object(item, label, space))]
    if isinstance(item, tuple | list) and len(item) == 2:
        return [(label, _nb101(item[0], item[1], label, space))]
    raise SearchError(f"{label}: expected a file, a NAS-Bench-201 string, an architecture's "
                      f"JSON object, an Arch or a (matrix, ops) pair; got "
                      f"{type(item).__name__}")


def _file(path: str, space: Space) -> list[tuple[str, Arch]]:
    file = Path(path)
    if not file.exists():
        raise SearchError(f"{path}: no such file")
    if not file.is_file():
        raise SearchError(f"{path}: not a file")
    try:
        text = file.read_text()
    except UnicodeDecodeError:
        raise SearchError(f"{path}: not a text file") from None
    except OSError as error:
        raise SearchError(f"{path}: cannot read it ({error.strerror or error})") from None
    if not text.strip():
        raise SearchError(f"{path}: holds no architecture")
    if text.lstrip()[:1] in ("{", "["):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as error:
            raise SearchError(f"{path}: not valid JSON ({error})") from None
        if isinstance(obj, dict):
            return [(path, _object(obj, path, space))]
        if not obj:
            raise SearchError(f"{path}: holds no architecture (an empty list)")
        found = []
        for index, element in enumerate(obj):
            label = f"{path} item {index}"
            if isinstance(element, str):
                found.append((label, _nb201(element, label, space)))
            elif isinstance(element, dict):
                found.append((label, _object(element, label, space)))
            else:
                raise SearchError(f"{label}: expected an architecture's JSON object or a "
                                  f"NAS-Bench-201 string; got {type(element).__name__}")
        return found
    if not _is_nb201(space):
        raise SearchError(f"{path}: not JSON; a text file of NAS-Bench-201 strings (one per "
                          f"line) needs the nasbench201 space, and this run searches "
                          f"{space.name}")
    return [(f"{path} line {number}", _nb201(line.strip(), f"{path} line {number}", space))
            for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _object(obj: dict, label: str, space: Space) -> Arch:
    if {"matrix", "ops"} <= obj.keys():
        return _nb101(obj["matrix"], obj["ops"], label, space)
    if "nodes" not in obj:
        raise SearchError(f"{label}: an architecture object has 'nodes' and 'edges' (jaxnas) "
                          f"or 'matrix' and 'ops' (NAS-Bench-101); got keys "
                          f"{', '.join(map(repr, obj)) or 'none'}")
    named = obj.get("space", space.name)
    if named != space.name:
        raise SearchError(f"{label}: an architecture of the {named} space; this run searches "
                          f"{space.name}")
    try:
        return from_json(obj, space.op_names)
    except ArchError as error:
        raise SearchError(f"{label}: {error}") from None


def _nb201(text: str, label: str, space: Space) -> Arch:
    if not _is_nb201(space):
        raise SearchError(f"{label}: a NAS-Bench-201 string needs the nasbench201 space; this "
                          f"run searches {space.name}")
    try:
        return nb201_from_str(text)
    except ArchError as error:
        raise SearchError(f"{label}: {error}") from None


def _nb101(matrix: Any, ops: Any, label: str, space: Space) -> Arch:
    if not (space.topology == "dag" and tuple(space.op_names) == NB101_OPS):
        raise SearchError(f"{label}: a NAS-Bench-101 spec needs the nasbench101 space; this "
                          f"run searches {space.name}")
    if not (isinstance(ops, list | tuple) and all(isinstance(op, str) for op in ops)):
        raise SearchError(f"{label}: a NAS-Bench-101 spec's ops are a list of names")
    try:
        matrix = np.asarray(matrix)
    except ValueError:
        raise SearchError(f"{label}: a NAS-Bench-101 matrix is a square list of lists of "
                          "0 and 1") from None
    if matrix.dtype.kind not in "biu":
        raise SearchError(f"{label}: a NAS-Bench-101 matrix holds 0 and 1; got "
                          f"{matrix.dtype} entries")
    try:
        return nb101_to_arch(matrix, list(ops), space.max_nodes)
    except ArchError as error:
        raise SearchError(f"{label}: {error}") from None


def _is_nb201(space: Space) -> bool:
    return (space.topology == "fixed" and tuple(space.op_names) == NB201_OPS
            and np.array_equal(space.fixed_adj(), NB201_ADJ))
