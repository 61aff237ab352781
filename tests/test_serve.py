"""The run page in headless Chromium, `jaxnas search --serve`, report --importance / --draw.

The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages ending in a NUL byte on file descriptors 3 and 4), so one page stays
open while its run directory changes. The browser tests are skipped only when no
Chromium is installed (``.ci/run`` installs Debian's ``chromium`` when it is missing).
"""

import base64
import fcntl
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import searching

# The settings of tests/test_search.py's TINY (another seed): with the session's
# compilation cache (tests/conftest.py) this search loads the programs those compiled.
TINY = ["--space", "mlp", "--population", "4", "--budget-evals", "12", "--steps", "20",
        "--final-steps", "20", "--batch-size", "32", "--cells", "2", "--seed", "5", "--quiet"]
BROWSERS = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")


def _get(url: str, method: str = "GET"):
    request = urllib.request.Request(url, method=method, data=b"x" if method != "GET" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory):
    """A real search run with --serve; /api/run is read while it runs.

    Returns the run directory and every (status, evaluations) the page's endpoint gave.
    """
    out = tmp_path_factory.mktemp("serve") / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "jaxnas.cli", "search", *TINY, "--out", str(out), "--serve",
         "--port", "0"], env=searching.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    line = process.stderr.readline()
    assert line.startswith("watch the search at http://127.0.0.1:"), line
    url = line.split()[-1]
    seen = []
    while process.poll() is None:
        try:
            status, body = _get(url + "api/run")
        except OSError:  # the search ended and took its server with it
            break
        if status == 200:
            run = json.loads(body)
            seen.append((run["status"], len(run["evaluations"])))
        time.sleep(0.2)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return out, seen


def test_search_serve_shows_the_run_while_it_runs(watched_run):
    out, seen = watched_run
    # Evaluations appear while the process still runs (it retrains the best afterwards).
    assert any(status == "running" and n > 0 for status, n in seen), seen
    counts = [n for _, n in seen]
    assert counts == sorted(counts) and counts[0] < 12 and max(counts) <= 12


def test_a_run_writes_drawings_and_importance(watched_run):
    out, _ = watched_run
    result = json.loads((out / "result.json").read_text())
    importance = result["importance"]
    assert importance["model"] == "ridge" and importance["evaluations"] == 12
    assert {f["kind"] for f in importance["features"]} <= {"op", "position", "edge"}
    assert [f["effect"] for f in importance["features"]] == sorted(
        f["effect"] for f in importance["features"])
    svg = ET.fromstring((out / "best" / "arch.svg").read_text())
    drawn = [g.get("data-op") for g in svg.iter("{http://www.w3.org/2000/svg}g")
             if g.get("class") == "node"]
    best = [name for name in result["best"]["arch"]["nodes"] if name != "pad"]
    assert sorted(drawn) == sorted(best)
    assert (out / "best" / "arch.png").read_bytes()[:4] == b"\x89PNG"


def test_report_prints_importance_and_draws_the_top_k(watched_run, cli_main):
    out, _ = watched_run
    done = cli_main("report", out, "--importance", "--draw", "3", "--top", "4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("kind"))
    assert lines[header].split() == ["kind", "feature", "effect", "90%", "interval", "share"]
    importance = json.loads((out / "result.json").read_text())["importance"]
    first_op = next(f for f in importance["features"] if f["kind"] == "op")
    op_rows = [line for line in lines[header + 1:] if line.startswith("op ")]
    assert op_rows[0].split()[1] == first_op["name"]
    assert f"{first_op['effect']:.4f}" in op_rows[0]
    assert 1 <= len(op_rows) <= 4
    ranked = sorted(_log(out), key=lambda r: (r["val_loss"], r["hash"]))
    for rank, record in enumerate(ranked[:3], 1):
        stem = out / "drawings" / f"rank{rank}-{record['hash'][:12]}"
        ET.fromstring(stem.with_suffix(".svg").read_text())
        assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((out / "drawings").glob("*.svg"))) == 3


class Server:
    """``jaxnas serve DIR --port 0`` in a subprocess."""

    def __init__(self, directory: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jaxnas.cli", "serve", str(directory), "--port", "0"],
            env=searching.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        assert " at http://127.0.0.1:" in line, line + self.process.stderr.read()
        self.url = line.split(" at ")[1].split()[0]

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def serve():
    servers = []

    def start(directory):
        servers.append(Server(directory))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_the_server_is_read_only_and_answers_get(watched_run, serve):
    out, _ = watched_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    server = serve(out)
    status, body = _get(server.url + "api/run")
    run = json.loads(body)
    assert status == 200 and run["status"] == "finished"
    assert [r["hash"] for r in run["evaluations"]] == [r["hash"] for r in _log(out)]
    for method in ("POST", "PUT", "DELETE"):
        assert _get(server.url + "api/run", method)[0] == 405
    assert _get(server.url + "../result.json")[0] == 404
    status, svg = _get(server.url + f"api/arch/{run['evaluations'][0]['hash']}.svg")
    assert status == 200 and ET.fromstring(svg).tag.endswith("svg")
    for asset in ("", "app.js", "style.css"):
        status, body = _get(server.url + asset)
        assert status == 200 and b"http://" not in body.replace(b"http://www.w3.org", b"")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


@pytest.mark.parametrize("make_dir, message", [
    (lambda tmp: tmp / "missing", "no such directory"),
    (lambda tmp: tmp, "is not a run directory"),
])
def test_serve_rejects_a_directory_that_is_not_a_run(tmp_path, make_dir, message):
    done = searching.cli("serve", str(make_dir(tmp_path)), "--port", "0", check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_serve_on_a_port_in_use_says_so(watched_run):
    out, _ = watched_run
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = searching.cli("serve", str(out), "--port", str(taken.getsockname()[1]),
                             check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot serve on 127.0.0.1:" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--serve"], "--serve needs a run directory"),
    (["--port", "9000"], "--port is the port of --serve"),
    (["--serve", "--port", "70000", "--out", "never"], "--port must be between 0 and 65535"),
])
def test_search_serve_options_are_checked_before_searching(tmp_path, monkeypatch, cli_main,
                                                          args, message):
    monkeypatch.chdir(tmp_path)
    done = cli_main("search", *args, "--budget-evals", "4")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr and not (tmp_path / "never").exists()


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe."""

    def __init__(self, executable: str, profile: Path):
        to_browser, self._ours = os.pipe()
        self._theirs, from_browser = os.pipe()
        # Above 10 so that the shell's "3<&N 4>&M" cannot overwrite one with the other.
        read_end = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10)
        write_end = fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
        for fd in (to_browser, from_browser):
            os.close(fd)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--remote-debugging-pipe",
                 "--window-size=1400,2000", "--hide-scrollbars", f"--user-data-dir={profile}",
                 "about:blank"]
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{read_end} 4>&{write_end} '
             f"{read_end}<&- {write_end}>&-", executable, *flags],
            pass_fds=(read_end, write_end), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(read_end)
        os.close(write_end)
        self._buffer = b""
        self._id = 0
        self.session = None

    def send(self, method: str, timeout: float = 30, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        os.write(self._ours, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.time()
                assert left > 0 and select.select([self._theirs], [], [], left)[0], method
                chunk = os.read(self._theirs, 1 << 20)
                assert chunk, "the browser closed its pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")

    def table(self) -> list[list[str]]:
        return self.evaluate("[...document.querySelectorAll('#evaluations tbody tr')].map("
                             "tr => [tr.dataset.hash, ...[...tr.cells].map(c => c.textContent)])")

    def screenshot(self, path: Path, whole_page: bool = True) -> None:
        path.write_bytes(base64.b64decode(self.send(
            "Page.captureScreenshot", format="png", captureBeyondViewport=whole_page)["data"]))

    def close(self):
        self.session = None
        try:
            self.send("Browser.close", timeout=10)
        except AssertionError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._ours)
        os.close(self._theirs)


@pytest.fixture
def browser(tmp_path):
    executable = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if executable is None:
        pytest.skip("no headless Chromium found (tried " + ", ".join(BROWSERS) + "); .ci/run "
                    "installs Debian's chromium, or: apt-get install chromium")
    chromium = Browser(executable, tmp_path / "profile")
    yield chromium
    chromium.close()


def _assert_table_matches_log(rows: list[list[str]], log: list[dict]) -> None:
    assert sorted(row[0] for row in rows) == sorted(record["hash"] for record in log)
    by_hash = {record["hash"]: record for record in log}
    for row in rows:
        record = by_hash[row[0]]
        number, short_hash, _, val_loss, val_acc, params, flops, generation = row[1:9]
        assert short_hash == record["hash"][:12]
        assert val_loss == f"{record['val_loss']:.4f}" and val_acc == f"{record['val_acc']:.4f}"
        assert params == f"{record['params']:,}" and flops == f"{record['flops']:,}"
        assert generation == str(record["generation"])
        assert log[int(number) - 1]["hash"] == record["hash"]


def test_the_page_of_a_finished_run_shows_its_log(watched_run, serve, browser, tmp_path):
    out, _ = watched_run
    server = serve(out)
    browser.open(server.url)
    browser.wait_for("document.body.dataset.status === 'finished'")
    log = _log(out)
    _assert_table_matches_log(browser.table(), log)
    # Sorted by fitness (validation loss here) by default; a click on "val acc" sorts by it.
    shown = [row[4] for row in browser.table()]
    assert shown == sorted(shown)
    browser.evaluate("document.querySelector('th[data-key=val_acc]').click()")
    accuracies = [float(row[5]) for row in browser.table()]
    assert accuracies == sorted(accuracies)
    best = json.loads((out / "result.json").read_text())["best"]["hash"]
    assert browser.wait_for("document.getElementById('best-drawing').dataset.hash") == best
    drawn = browser.evaluate("[...document.querySelectorAll('#best-drawing g.node')]"
                             ".map(g => g.dataset.op)")
    assert len(drawn) == len([n for n in json.loads((out / "result.json").read_text())
                              ["best"]["arch"]["nodes"] if n != "pad"])
    assert browser.evaluate("document.querySelectorAll('#importance g.feature').length") > 0
    assert browser.evaluate("document.querySelectorAll('#pareto-front').length") == 1
    browser.screenshot(tmp_path / "finished.png")
    assert (tmp_path / "finished.png").read_bytes()[:4] == b"\x89PNG"


def test_the_page_of_a_running_search_updates_as_the_log_grows(watched_run, serve, browser,
                                                                tmp_path):
    finished, _ = watched_run
    out = tmp_path / "running"
    # The same search killed in its first generations: its checkpoint covers at most
    # the log's first four lines, as a running search's does.
    searching.kill_after(TINY, out, 4)
    lines = (finished / "log.jsonl").read_text().splitlines(keepends=True)
    first = (out / "log.jsonl").read_text().splitlines(keepends=True)[:4]
    (out / "log.jsonl").write_text("".join(first))
    (out / ".lock").write_text(str(os.getpid()))  # a live process holds the run
    server = serve(out)
    browser.open(server.url)
    browser.wait_for("document.body.dataset.status === 'running' && "
                     "document.body.dataset.evaluations === '4'")
    _assert_table_matches_log(browser.table(), _log(out))
    with open(out / "log.jsonl", "a") as log:
        log.write("".join(lines[4:8]))
        log.write(lines[8][:40])  # a line still being written is not shown yet
    browser.wait_for("document.body.dataset.evaluations === '8'", timeout=20)
    _assert_table_matches_log(browser.table(), [json.loads(line) for line in first + lines[4:8]])
    progress = browser.evaluate("document.getElementById('progress-text').textContent")
    assert progress.startswith("8 / 12 evaluations")
    browser.screenshot(tmp_path / "running.png")
    assert (tmp_path / "running.png").read_bytes()[:4] == b"\x89PNG"
