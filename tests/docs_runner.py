"""Runs a document's blocks for tests/test_docs.py: ``python tests/docs_runner.py PLAN``
in the document's fresh directory (tests/test_docs.py says what each kind of block does).

It prints ``=== DOCUMENT:LINE KIND`` before each block and its seconds after it, and
``=== FAILED line LINE ...`` then exits 1 at the first block that fails.

The shell finds a ``jaxnas`` of this runner's first on ``PATH`` (``SHIM``): it hands its
arguments, directory and environment over a socket to this process, which runs
``jaxnas.cli.main`` on them, as the console script does, and sends back the output and
exit code. So one process runs a document's commands: each program is traced once per
document, not once per command (a tiny search is ~13 s of start-up and tracing, a
second one in the same process well under one). A command whose ``XLA_FLAGS`` differ
from this process's, and commands that serve a page (they are stopped by a signal),
run the real console script instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

URL = re.compile(r"http://127\.0\.0\.1:\d+/")
# The ``jaxnas`` the shell runs: a client of ``Commands`` (or, with its XLA_FLAGS or
# JAXNAS_DOCS_REAL set, the real console script).
SHIM = """#!{python}
import json, os, socket, sys
real = os.environ.get("JAXNAS_DOCS_REAL") or (
    os.environ.get("XLA_FLAGS", "") != os.environ["JAXNAS_DOCS_XLA_FLAGS"])
if real:
    os.execv(sys.executable, [sys.executable, "-m", "jaxnas.cli", *sys.argv[1:]])
client = socket.socket(socket.AF_UNIX)
client.connect(os.environ["JAXNAS_DOCS_SOCKET"])
client.sendall(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}).encode() + b"\\n")
reply = json.loads(client.makefile("rb").readline())
sys.stdout.write(reply["stdout"])
sys.stderr.write(reply["stderr"])
sys.exit(reply["code"])
"""


class Commands:
    """Runs the shell's ``jaxnas`` commands in this process (see the module docstring)."""

    def __init__(self, env: dict):
        self.directory = tempfile.mkdtemp(prefix="jaxnas-docs-")
        self.path = os.path.join(self.directory, "socket")
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(self.path)
        self.server.listen()
        self.server.settimeout(0.05)
        shim = Path(self.directory, "jaxnas")
        shim.write_text(SHIM.format(python=sys.executable))
        shim.chmod(0o755)
        self.env = {**env, "PATH": os.pathsep.join([self.directory, env["PATH"]]),
                    "JAXNAS_DOCS_SOCKET": self.path,
                    "JAXNAS_DOCS_XLA_FLAGS": env.get("XLA_FLAGS", "")}

    def bash(self, args: list[str], real: bool = False, **kwargs) -> int:
        """Runs ``bash ARGS``, serving its ``jaxnas`` commands until it ends; its exit code."""
        env = {**self.env, "JAXNAS_DOCS_REAL": "1"} if real else self.env
        process = subprocess.Popen(["bash", *args], env=env, **kwargs)
        while process.poll() is None:
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            with connection:
                request = json.loads(connection.makefile("rb").readline())
                connection.sendall(json.dumps(self._run(**request)).encode() + b"\n")
        return process.returncode

    @staticmethod
    def _run(argv: list[str], cwd: str) -> dict:
        from jaxnas.cli import main

        here, out, err = os.getcwd(), io.StringIO(), io.StringIO()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as exit_:  # argparse's usage errors
                    code = exit_.code if isinstance(exit_.code, int) else 1
                except Exception:  # noqa: BLE001 (a crash is the command's output)
                    import traceback

                    traceback.print_exc()
                    code = 1
        finally:
            os.chdir(here)
        return {"stdout": out.getvalue(), "stderr": err.getvalue(), "code": code}


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


def _run_errors(step: dict, commands: Commands) -> None:
    for command, expected in commands_with_comments(step["text"]):
        print(f"$ {command}", flush=True)
        with tempfile.TemporaryFile("w+") as stderr:
            code = commands.bash(["-c", command], stdout=subprocess.DEVNULL, stderr=stderr)
            stderr.seek(0)
            printed = stderr.read()
        print(printed, end="", flush=True)
        if code != 2:
            _fail(step, f"`{command}` exited {code}, not 2")
        for line in expected:
            if line not in printed:
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
    document = work["document"]
    commands = Commands(dict(os.environ))
    # This process serves the shell's commands: it gives itself the devices the console
    # script does (one per core), before JAX starts.
    from jaxnas.cli import use_a_device_per_core

    use_a_device_per_core()
    env = {**commands.env, "JAXNAS_DOCS_REAL": "1"}
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
            _run_errors(step, commands)
        elif step["kind"] == "server":
            _run_server(step, env)
        else:
            code = commands.bash(["-e", "-o", "pipefail", "-c", step["text"]])
            if code != 0:
                _fail(step, f"exit code {code}")
        print(f"=== {time.time() - started:.1f} s", flush=True)


if __name__ == "__main__":
    run_plan(sys.argv[1])
