"""Searches that tests run as the console script does, in subprocesses.

They share the session's compilation cache with the test processes (tests/conftest.py),
so each program is compiled once per session (tests/test_compile_cache.py shows the
cache changes no result).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "JAXNAS_COMPILE_CACHE": os.environ["JAXNAS_TEST_SUBPROCESS_CACHE"]}


def cli(*args, check=True, **kwargs):
    """``python -m jaxnas.cli ARGS``; raises with its stderr on a non-zero exit if
    ``check``."""
    result = subprocess.run([sys.executable, "-m", "jaxnas.cli", *map(str, args)],
                            capture_output=True, text=True, env=env(), timeout=600, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr[-2000:]}")
    return result


def log_without_time(out: Path) -> list[dict]:
    """A run's log lines without their wall-clock field."""
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("seconds")
    return lines


def kill_after(args, out: Path, records: int) -> None:
    """Starts ``jaxnas search ARGS --out OUT`` and SIGKILLs it once the log holds
    ``records`` lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "jaxnas.cli", "search", *args, "--out", str(out), "--quiet"],
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    log = out / "log.jsonl"
    while time.time() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= records:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the search ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
