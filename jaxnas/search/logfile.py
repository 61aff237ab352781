"""The evaluation log's format: one JSON object per line, a ``Record`` each."""

from __future__ import annotations

import json
import math
import os

from jaxnas.search.config import Record

_NUMBERS = ("val_loss", "val_acc", "seconds")
_INTEGERS = ("generation", "params", "flops", "steps")


def append_records(log_file, records: list[Record]) -> None:
    """Appends evaluation records to the open log and syncs it to disk."""
    for record in records:
        log_file.write((json.dumps(record.to_json()) + "\n").encode())
    log_file.flush()
    os.fsync(log_file.fileno())


class LogReader:
    """Parses a log's bytes into records, raising ``error(message)`` naming the file and
    the line for anything else.

    Args:
      blob: the log's bytes.
      name: the log's path, as messages name it.
      error: the exception class to raise.
    """

    def __init__(self, blob: bytes, name: str, error: type[Exception]):
        self.blob = blob
        self.name = name
        self.error = error

    def records(self, until: int | None = None, tail_from: float = math.inf) -> list[Record]:
        """The records of the first ``until`` bytes (None: all).

        An unfinished last line (no newline) starting at or after byte ``tail_from`` is
        left out (a search stopped, or still writing, there); anywhere else it is an
        error: the log was cut short.
        """
        data = self.blob if until is None else self.blob[:until]
        end = data.rfind(b"\n") + 1
        if end < len(data) and end < tail_from:
            line = data.count(b"\n") + 1
            raise self.error(f"{self.name} ends in the middle of line {line}: the log was cut "
                             "short (restore it from a copy, or start a new run)")
        return [self._record(number, line)
                for number, line in enumerate(data[:end].split(b"\n")[:-1], 1)]

    def _record(self, number: int, line: bytes) -> Record:
        try:
            fields = json.loads(line.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise self._bad(number, f"not JSON: {error}") from None
        if not isinstance(fields, dict):
            raise self._bad(number, "not a JSON object")
        try:
            record = Record(**fields)
        except TypeError as error:
            raise self._bad(number, str(error).replace("Record.__init__() ", "")) from None
        wrong = _wrong_field(record)
        if wrong is not None:
            raise self._bad(number, wrong)
        return record

    def _bad(self, number: int, reason: str) -> Exception:
        return self.error(f"{self.name} line {number} is not an evaluation record ({reason})")


def _wrong_field(record: Record) -> str | None:
    """What is wrong with a record's field types (None: nothing)."""
    for name in _NUMBERS + _INTEGERS:
        value = getattr(record, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} is {value!r}, not a number"
    for name in _INTEGERS:
        if not isinstance(getattr(record, name), int):
            return f"{name} is {getattr(record, name)!r}, not an integer"
    if not isinstance(record.hash, str):
        return f"hash is {record.hash!r}, not a string"
    hyper = record.hyperparameters
    if hyper is not None and not (isinstance(hyper, dict) and all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in hyper.items())):
        return f"hyperparameters is {hyper!r}, not an object of numbers"
    arch = record.arch
    if not (isinstance(arch, dict) and isinstance(arch.get("nodes"), list)
            and isinstance(arch.get("edges"), list)):
        return "arch has no lists 'nodes' and 'edges'"
    return None
