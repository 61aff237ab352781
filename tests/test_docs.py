"""Every code block of README.md and docs/*.md runs as written, and docs/cli.md
documents every option of the ``jaxnas`` command.

How a document is run (one test per document, so a failure names it): its blocks run
in order, in a fresh temporary directory, in one Python process (a fresh interpreter
that this file starts as a script), as a reader who keeps one terminal and one Python
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
smaller numbers, per document, with the regular expressions of ``SUBSTITUTIONS``; every
substitution must still match its document, so the table cannot go stale. Everything
else runs exactly as written. Compiled programs come from the session's compilation
cache (tests/conftest.py), for the shell's searches (``JAXNAS_COMPILE_CACHE``) and the
Python blocks alike; the cache changes no result (tests/test_compile_cache.py).

A new block in any of these files is picked up by itself: give it settings small
enough for the suite, or a substitution here, or (rarely, with a reason) a mark.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", *sorted(p.relative_to(REPO).as_posix()
                                  for p in (REPO / "docs").glob("*.md"))]
SHELL = ("sh", "bash", "console")
PYTHON = ("python", "py")
MARK = re.compile(r"^<!--\s*(not run|expect exit 2|server)\s*(?::\s*(.*?))?\s*-->$")
FILE_LINE = re.compile(r"^# file: (\S+)\s*$")
URL = re.compile(r"http://127\.0\.0\.1:\d+/")
# Blocks that cannot run in the suite; each says why in its mark. Keep them few.
MAX_NOT_RUN = 12

# Per document: (pattern, replacement) applied to every block's text before it runs.
SUBSTITUTIONS: dict[str, list[tuple[str, str]]] = {
    "README.md": [
        # MNIST-1D to 99%: 40 candidates of 600 steps, then 3000 (4.5 min) -> seconds.
        (r"--cells 2 --width 32 --population 8 \\\n    --budget-evals 40 --steps 600 "
         r"--batch-size 128 --final-steps 3000",
         "--cells 1 --width 4 --population 2 \\\n    --budget-evals 2 --steps 5 "
         "--batch-size 32 --final-steps 5"),
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


def commands_with_comments(text: str) -> list[tuple[str, list[str]]]:
    """A shell block as (command, the ``# `` comment lines right after it) pairs; a
    command's ``\\`` continuation lines are joined to it."""
    pairs: list[tuple[str, list[str]]] = []
    command = ""
    for line in text.splitlines():
        stripped = line.strip()
        if command.endswith("\\"):
            command = command[:-1] + " " + stripped
        elif stripped.startswith("#"):
            if pairs:
                pairs[-1][1].append(stripped[1:].strip())
        elif stripped:
            command = stripped
        if command and not command.endswith("\\"):
            pairs.append((command.split(" #")[0].strip(), []))
            command = ""
    return pairs


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


def test_document_runs_as_written(document, tmp_path):
    steps = plan(document)
    if not steps:
        return
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"document": document, "steps": steps}))
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([sys.executable, __file__, str(plan_file)], cwd=work,
                            env=environment(), capture_output=True, text=True, timeout=1200)
    failed = re.findall(r"^=== FAILED (.*)$", result.stdout, re.M)
    assert result.returncode == 0, (f"{document}: {failed[-1] if failed else 'runner failed'}"
                                    f"\n{(result.stdout + result.stderr)[-4000:]}")


def pytest_generate_tests(metafunc):
    if "document" in metafunc.fixturenames:
        metafunc.parametrize("document", DOCUMENTS, ids=DOCUMENTS)


# The runner: ``python tests/test_docs.py PLAN.json``, in the document's directory.

def _fail(step: dict, why: str) -> None:
    print(f"=== FAILED line {step['line']} ({step['kind']} block): {why}", flush=True)
    sys.exit(1)


def _run_errors(step: dict, env: dict) -> None:
    for command, expected in commands_with_comments(step["text"]):
        print(f"$ {command}", flush=True)
        result = subprocess.run(["bash", "-c", command], env=env, capture_output=True,
                                text=True, timeout=600)
        print(result.stderr, end="", flush=True)
        if result.returncode != 2:
            _fail(step, f"`{command}` exited {result.returncode}, not 2")
        for line in expected:
            if line not in result.stderr:
                _fail(step, f"`{command}` did not print: {line}")


def _run_server(step: dict, env: dict) -> None:
    for command, _ in commands_with_comments(step["text"]):
        command = f"{command} --port 0"
        print(f"$ {command}", flush=True)
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        url, output = None, []
        deadline = time.time() + 600
        while url is None and time.time() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            found = URL.search(line)
            url = found.group(0) if found else None
        if url is None:
            process.kill()
            _fail(step, f"`{command}` printed no URL:\n{''.join(output)}")
        with urllib.request.urlopen(url, timeout=60) as response:
            if response.status != 200 or b"<html" not in response.read().lower():
                _fail(step, f"{url} answered {response.status}")
        if re.search(r"\bjaxnas(\s+--import\s+\S+)*\s+serve\b", command):
            process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=600)
        print("".join(output) + rest, end="", flush=True)
        if process.returncode != 0:
            _fail(step, f"`{command}` exited {process.returncode}")


def _run_python(step: dict, document: str, namespace: dict) -> None:
    if "__jaxnas_cache__" not in namespace:  # the session's cache, as for the shell
        from jaxnas import compile_cache

        namespace["__jaxnas_cache__"] = compile_cache.enable()
    code = compile("\n" * step["line"] + step["text"], str(REPO / document), "exec")
    try:
        exec(code, namespace)
    except BaseException as error:  # noqa: BLE001 (the block's own failure, reported)
        import traceback

        traceback.print_exc()
        _fail(step, f"{type(error).__name__}: {error}")


def run_plan(plan_file: str) -> None:
    import importlib

    work = json.loads(Path(plan_file).read_text())
    document, env = work["document"], dict(os.environ)
    sys.path[0] = os.getcwd()  # as an interactive session: this directory, not tests/
    namespace = {"__name__": "__main__"}
    for step in work["steps"]:
        started = time.time()
        print(f"=== {document}:{step['line']} {step['kind']}", flush=True)
        if step["kind"] == "file":
            Path(step["name"]).write_text(step["text"])
            importlib.invalidate_caches()
        elif step["kind"] == "python":
            _run_python(step, document, namespace)
        elif step["kind"] == "errors":
            _run_errors(step, env)
        elif step["kind"] == "server":
            _run_server(step, env)
        else:
            result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["text"]],
                                    env=env, timeout=1200)
            if result.returncode != 0:
                _fail(step, f"exit code {result.returncode}")
        print(f"=== {time.time() - started:.1f} s", flush=True)


if __name__ == "__main__":
    run_plan(sys.argv[1])
