"""Two processes on loopback (JAX's multi-controller runtime) give the one-process results."""

import json
import pathlib
import socket
import subprocess
import sys

import jax
import train_worker
from test_sharding import compare, worker_env

from jaxnas import data

WORKER = pathlib.Path(train_worker.__file__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_match_one():
    coordinator = f"127.0.0.1:{free_port()}"
    # One device per process, whatever XLA flags this process was started with.
    env = worker_env("--xla_force_host_platform_device_count=1")
    workers = [
        subprocess.Popen([sys.executable, str(WORKER), "--coordinator", coordinator,
                          "--num-processes", "2", "--process-id", str(index)],
                         env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for index in range(2)
    ]
    try:
        with jax.debug_key_reuse(True):
            reference = train_worker.run(data.load("digits"))
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-4000:]
    for stdout, _ in outputs:
        result = json.loads(stdout.strip().splitlines()[-1])
        assert result["devices"] == 2
        compare(result, reference)
