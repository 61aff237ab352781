"""Several processes (hosts) training one population with JAX's multi-controller runtime.

Every process runs the same program: it calls ``initialize_distributed`` first, then
builds the same population from the same key and calls ``train_population``. The
population axis is sharded over the devices of all processes; every process gets the
full metrics (they are gathered inside the program), while parameters and optimiser
state stay sharded: each process holds its own candidates' shards of
``TrainResult.state`` (use ``jax.experimental.multihost_utils.process_allgather`` to
collect them on every host).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int,
                           local_device_ids: Sequence[int] | None = None,
                           cpu_collectives: str = "gloo") -> None:
    """Joins this process to a multi-process JAX run; call before any other JAX call.

    Args:
      coordinator_address: "host:port" of process 0, the same in every process.
      num_processes: number of processes.
      process_id: this process's index, 0..num_processes-1.
      local_device_ids: the local devices this process uses (default all).
      cpu_collectives: cross-process collectives on CPU ("gloo" or "mpi"); CPU
        programs that span processes need one to gather results.
    """
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in 0..{num_processes - 1}; got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               local_device_ids=local_device_ids)
