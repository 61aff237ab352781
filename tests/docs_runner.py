"""Runs a document's blocks for tests/test_docs.py: ``python tests/docs_runner.py PLAN``
in the document's fresh directory (tests/test_docs.py says what each kind of block does).

It prints ``=== DOCUMENT:LINE KIND`` before each block and its seconds after it, and
``=== FAILED line LINE ...`` then exits 1 at the first block that fails.
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

URL = re.compile(r"http://127\.0\.0\.1:\d+/")


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


def _run_python(step: dict, path: str, namespace: dict) -> None:
    if "__jaxnas_cache__" not in namespace:  # the session's cache, as for the shell
        from jaxnas import compile_cache

        namespace["__jaxnas_cache__"] = compile_cache.enable()
    code = compile("\n" * step["line"] + step["text"], path, "exec")
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
            _run_python(step, work["path"], namespace)
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
