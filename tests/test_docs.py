"""Every code block of README.md and docs/*.md runs as written, and docs/cli.md
documents every option of the ``jaxnas`` command.

How a document is run (one test per document, so a failure names the document, and
the line of the block that failed; documents run two at a time): its blocks run
in order, in a fresh temporary directory, in one Python process (a fresh interpreter
running tests/docs_runner.py), as a reader who keeps one terminal and one Python
session open goes through it:

- ```` ```sh ````, ```` ```bash ```` and ```` ```console ```` blocks are shell commands,
  run by ``bash -e -o pipefail`` with this interpreter's bin directory (its ``jaxnas``,
  ``python``) first on ``PATH`` and the repository on ``PYTHONPATH``; in a console
  block only the ``$ `` lines (and their ``\\`` continuations) are commands.
- ```` ```python ```` blocks run in one shared namespace, in order (so a block may use
  the names of an earlier block of the same document), with the directory on
  ``sys.path`` as in an interactive session.
- A python block whose first line is ``# file: NAME`` is a file the reader saves: it
  is written to ``NAME`` and not run. The line stays visible, so the reader sees the
  name too.
- Any other block (```` ```text ````, ```` ```json ````, a bare fence) is an output
  example and is not run.

Marks, an HTML comment on the line right before a block (invisible when rendered, so
the text around the block must say the same in words):

- ``<!-- not run: REASON -->``: the block is not run (installing, ``make demo``, an
  hour-long benchmark, files or hardware the suite does not have). Such blocks are
  counted (``MAX_NOT_RUN``) and must give a reason.
- ``<!-- expect exit 2 -->``: a shell block of mistakes. Each command must exit with
  code 2, and the ``# ...`` comment lines right after it are its stderr, checked.
- ``<!-- server -->``: a shell block of commands that serve a run's page (``jaxnas
  serve``, ``jaxnas search --serve``). Each is started with ``--port 0`` appended (so
  the suite never takes port 8765), the page at the URL it prints must answer 200, then
  a ``jaxnas serve`` is stopped with Ctrl-C (SIGINT) and a search is left to finish;
  both must exit 0.

Smaller settings: blocks written for a user's real run (``--budget-evals 48 --steps
100``, 1000 seeds, widths of 32) would take minutes here, so the test substitutes
smaller numbers, per document, with the regular expressions of ``SUBSTITUTIONS``
(README.md: the MNIST-1D run, the Python example, the inheritance / repeats / initial
searches, the joint search's command and Python example, the watched search,
``jaxnas bench`` and the fused table search;
docs/watching.md: its search); every substitution must still match its document, so the
table cannot go stale. Everything
else runs exactly as written. Compiled programs come from the session's compilation
cache (tests/conftest.py), for the shell's searches (``JAXNAS_COMPILE_CACHE``) and the
Python blocks alike; the cache changes no result (tests/test_compile_cache.py).

A new block in any of these files is picked up by itself: give it settings small
enough for the suite, or a substitution here, or (rarely, with a reason) a mark.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "docs_runner.py"
DOCUMENTS = ["README.md", *sorted(p.relative_to(REPO).as_posix()
                                  for p in (REPO / "docs").glob("*.md"))]
SHELL = ("sh", "bash", "console")
PYTHON = ("python", "py")
MARK = re.compile(r"^<!--\s*(not run|expect exit 2|server)\s*(?::\s*(.*?))?\s*-->$")
FILE_LINE = re.compile(r"^# file: (\S+)\s*$")
# Blocks that cannot run in the suite; each says why in its mark. Keep them few.
MAX_NOT_RUN = 12
WORKERS = 2

# Per document: (pattern, replacement) applied to every block's text before it runs.
SUBSTITUTIONS: dict[str, list[tuple[str, str]]] = {
    "README.md": [
        # MNIST-1D to 99%: 40 candidates of 600 steps, then 3000 (4.5 min) -> seconds.
        (r"--cells 2 --width 32 --population 8 \\\n    --budget-evals 40 --steps 600 "
         r"--batch-size 128 --final-steps 3000",
         "--cells 1 --width 4 --population 2 \\\n    --budget-evals 2 --steps 5 "
         "--batch-size 64 --final-steps 5"),  # the programs of the --inherit search below
        # In Python: 32 NAS-Bench-201 cells of 100 steps (24 s), a default search of 64.
        (r"space\.sample\(jax\.random\.key\(0\), 32\)", "space.sample(jax.random.key(0), 2)"),
        (r"TrainConfig\(steps=100, batch_size=32\)", "TrainConfig(steps=5, batch_size=32)"),
        (r"budget=64\)", "budget=4, population=4, steps=20, final_steps=20)"),
        # Cheaper and steadier, --initial, watching: default-sized searches.
        (r"--inherit --out runs/inherit", "--inherit --width 4 --population 2 --budget-evals 4 "
         "--steps 5 --final-steps 5 --out runs/inherit"),
        (r"--out runs/(repeats|initial)", r"--population 4 --budget-evals 4 --steps 20 "
         r"--final-steps 20 --out runs/\1"),
        (r"--out runs/nb201", "--width 4 --population 2 --budget-evals 2 --steps 5 "
         "--final-steps 5 --out runs/nb201"),
        (r"--budget-evals 48 --steps 100", "--population 4 --budget-evals 4 --steps 20 "
         "--final-steps 20"),
        # Joint search: a default-sized search (the programs of the searches above; report
        # --importance needs 5 evaluations), and 16 candidates of 50 steps in Python.
        (r"--out runs/joint", "--population 4 --budget-evals 8 --steps 20 --final-steps 20 "
         "--out runs/joint"),
        (r"budget=16, steps=50, final_steps=100", "budget=4, population=4, steps=20, "
         "final_steps=20"),
        # Published tables: 1000 seeds of every strategy -> 4 seeds of two.
        (r"--seeds 1000 --budget 100 --loop-seeds 5",
         "--seeds 4 --budget 20 --loop-seeds 1 --strategy random,evolution"),
        (r"jax\.random\.key\(0\), 1000\)", "jax.random.key(0), 4)"),
    ],
    "docs/watching.md": [
        (r"--budget-evals 48 --steps 100", "--population 4 --budget-evals 8 --steps 20 "
         "--final-steps 20"),
    ],
}


def blocks(document: str) -> list[dict]:
    """The fenced blocks of ``document``: line (of the opening fence), language, mark
    (None, or (kind, reason)) and text."""
    lines = (REPO / document).read_text().splitlines()
    found, index = [], 0
    while index < len(lines):
        fence = re.match(r"^(\s{0,3})(`{3,})\s*(\S*)", lines[index])
        if not fence:
            index += 1
            continue
        start, ticks = index, fence.group(2)
        end = next(i for i in range(start + 1, len(lines))
                   if lines[i].strip().startswith(ticks) and not lines[i].strip().strip("`"))
        previous = next((lines[i].strip() for i in range(start - 1, -1, -1)
                         if lines[i].strip()), "")
        mark = MARK.match(previous)
        found.append({"line": start + 1, "language": fence.group(3).lower(),
                      "mark": (mark.group(1), mark.group(2) or "") if mark else None,
                      "text": "\n".join(lines[start + 1:end]) + "\n"})
        index = end + 1
    return found


def plan(document: str) -> list[dict]:
    """The blocks of ``document`` that run, substituted, each with its ``kind``: shell,
    python, file (written, not run), errors (expect exit 2) or server."""
    substitutions = SUBSTITUTIONS.get(document, [])
    steps = []
    for block in blocks(document):
        mark = block["mark"][0] if block["mark"] else None
        if mark == "not run" or block["language"] not in SHELL + PYTHON:
            continue
        text = block["text"]
        for pattern, replacement in substitutions:
            text = re.sub(pattern, replacement, text)
        if block["language"] == "console":
            text = _console_commands(text)
        if block["language"] in PYTHON:
            first = FILE_LINE.match(text.splitlines()[0])
            kind, name = ("file", first.group(1)) if first else ("python", None)
        else:
            kind, name = {"expect exit 2": "errors", "server": "server"}.get(mark, "shell"), None
        steps.append({"line": block["line"], "kind": kind, "name": name, "text": text})
    return steps


def _console_commands(text: str) -> str:
    commands, continuing = [], False
    for line in text.splitlines():
        if continuing or line.startswith("$ "):
            commands.append(line[2:] if not continuing else line)
            continuing = line.rstrip().endswith("\\")
    return "\n".join(commands) + "\n"


def environment() -> dict:
    """The environment of a document's run: this interpreter's bin directory first on
    PATH, the repository on PYTHONPATH, the session's compilation cache."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    cache = os.environ.get("JAXNAS_TEST_SUBPROCESS_CACHE")
    if cache:
        env["JAXNAS_COMPILE_CACHE"] = cache
    return env


def test_every_substitution_still_matches():
    """A substitution whose block was rewritten or removed is stale: it must go too."""
    for document, substitutions in SUBSTITUTIONS.items():
        texts = [block["text"] for block in blocks(document)]
        for pattern, _ in substitutions:
            assert any(re.search(pattern, text) for text in texts), (document, pattern)


def test_marks_are_few_and_say_why():
    marked = [(document, block) for document in DOCUMENTS for block in blocks(document)
              if block["mark"]]
    not_run = [(d, b["line"]) for d, b in marked if b["mark"][0] == "not run"]
    for document, block in marked:
        where = f"{document}:{block['line']}"
        if block["mark"][0] == "not run":
            assert block["mark"][1], f"{where}: <!-- not run: REASON --> needs a reason"
        else:
            assert block["language"] in SHELL, f"{where}: {block['mark'][0]} marks shell blocks"
    assert len(not_run) <= MAX_NOT_RUN, not_run


def test_every_command_line_option_is_documented():
    """docs/cli.md has a section per command (``## jaxnas search``, ``## jaxnas space
    count``, ...) that names each of its options; the parser is walked, so a new option
    fails here until it is documented."""
    import argparse

    from jaxnas.cli import build_parser

    text = (REPO / "docs" / "cli.md").read_text()
    sections = {m.group(1).strip(): m.end() for m in re.finditer(r"^## `?(jaxnas[^`\n]*)`?$",
                                                                     text, re.M)}

    def section(name: str) -> str:
        assert name in sections, f"docs/cli.md has no section '## {name}'"
        start = sections[name]
        ends = [end for end in sections.values() if end > start]
        return text[start:min(ends)] if ends else text[start:]

    def walk(parser: argparse.ArgumentParser, name: str):
        options = [option for action in parser._actions for option in action.option_strings
                   if option not in ("-h", "--help")]
        body = section(name)
        for option in options:
            documented = re.search(rf"`{re.escape(option)}(?![\w-])", body)
            assert documented, f"docs/cli.md, {name}: {option} is not documented"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command, sub in action.choices.items():
                    walk(sub, f"{name} {command}")

    parser = build_parser()
    walk(parser, "jaxnas")


def run_document(document: str, directory: Path) -> subprocess.CompletedProcess | None:
    """Runs ``plan(document)`` in ``directory/work`` with this file as the runner."""
    steps = plan(document)
    if not steps:
        return None
    plan_file = directory / "plan.json"
    plan_file.write_text(json.dumps({"document": document, "path": str(REPO / document),
                                     "steps": steps}))
    work = directory / "work"
    work.mkdir()
    return subprocess.run([sys.executable, str(RUNNER), str(plan_file)], cwd=work,
                          env=environment(), capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def document_runs(request, tmp_path_factory) -> dict:
    """Every selected document run, two at a time: a document is a chain of processes that
    mostly trace programs in one Python thread, so two share a 2-core machine well."""
    selected = [item.callspec.params["document"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_document_runs_as_written"
                and hasattr(item, "callspec")]
    directories = {document: tmp_path_factory.mktemp("doc") for document in selected}
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        runs = pool.map(lambda document: run_document(document, directories[document]),
                        selected)
        return dict(zip(selected, runs, strict=True))


def test_document_runs_as_written(document, document_runs):
    result = document_runs[document]
    if result is None:
        return
    failed = re.findall(r"^=== FAILED (.*)$", result.stdout, re.M)
    assert result.returncode == 0, (f"{document}: {failed[-1] if failed else 'runner failed'}"
                                    f"\n{(result.stdout + result.stderr)[-4000:]}")


def pytest_generate_tests(metafunc):
    if "document" in metafunc.fixturenames:
        metafunc.parametrize("document", DOCUMENTS, ids=DOCUMENTS)
