"""The population axis sharded over several devices gives the one-device results.

The sharded run happens in a subprocess with four forced host devices, so this
pytest process keeps its default device count.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import train_worker

from jaxnas import data

WORKER = pathlib.Path(train_worker.__file__)


def worker_env(*xla_flags: str) -> dict[str, str]:
    """This process's environment (with conftest's XLA flags) for a CPU worker with extra
    XLA flags."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", ""), *xla_flags]).strip()
    return env


def compare(result, reference):
    for name in ("val_loss", "val_acc", "train_curve", "continued_val_loss"):
        np.testing.assert_allclose(result[name], reference[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    assert result["step"] == reference["step"] == 2 * train_worker.CONFIG.steps


def test_four_devices_match_one():
    env = worker_env("--xla_force_host_platform_device_count=4")
    worker = subprocess.Popen([sys.executable, str(WORKER)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Computed while the subprocess runs; under the key-reuse checker like
        # test_train, so a full run reuses that module's compiled programs.
        with jax.debug_key_reuse(True):
            reference = train_worker.run(data.load("digits"))
        stdout, stderr = worker.communicate(timeout=300)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr[-4000:]
    sharded = json.loads(stdout.strip().splitlines()[-1])
    assert sharded["devices"] == 4 and reference["devices"] == 1
    compare(sharded, reference)
