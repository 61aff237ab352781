"""What the wheel holds: ``jaxnas bench --table jaxnas`` runs from an installed wheel,
outside the checkout, on the table that ships in the package."""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_packaged_table_is_the_benchmarks_table():
    packaged = json.loads(gzip.decompress((ROOT / "jaxnas/bench/nb201_mnist1d.json.gz")
                                         .read_bytes()))
    assert packaged == json.loads((ROOT / "benchmarks/results/nb201_mnist1d.json").read_text())


@pytest.mark.slow
def test_an_installed_wheel_benches_the_jaxnas_table(tmp_path):
    source = tmp_path / "source"  # built from a copy: the build leaves no files in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "jaxnas", source / "jaxnas",
                    ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w",
                    tmp_path / "dist", source], check=True, capture_output=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("jaxnas-*.whl"))
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True,
                   capture_output=True, timeout=600)
    assert not (site / "benchmarks").exists()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import jaxnas; print(jaxnas.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site))
    result = subprocess.run(
        [site / "bin" / "jaxnas", "bench", "--table", "jaxnas", "--seeds", "10", "--out",
         work / "bench", "--quiet"], cwd=work, env=env, capture_output=True, text=True,
        timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((work / "bench.json").read_text())
    assert report["results"] and (work / "bench.md").is_file()
