"""Several processes, one run: `jax.distributed` set-up and the process-0 rules.

Every process runs the same program over its own devices; the global batch is assembled
from each process's rows (see skinjax.train.parallel.JitParallel). Only process 0 writes
logs and reports; every process takes part in checkpoint saves, as orbax requires.
"""

import os

import jax
from orbax.checkpoint import multihost as orbax_multihost

# Long enough for process 0 to build a dataset while the others wait.
BARRIER_TIMEOUT_SECONDS = 3600
_barriers = 0


def initialize(*, multihost: bool = False, coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None) -> bool:
  """Calls `jax.distributed.initialize` when asked to; must run before any JAX computation.

  Asked to: `multihost`, any explicit argument, or JAX_COORDINATOR_ADDRESS in the
  environment. Arguments left None are JAX's to find (its own cluster detection: SLURM,
  Open MPI, Kubernetes, Cloud TPU, JAX_* variables), so `--multihost` alone is
  `jax.distributed.initialize()`. Returns whether it initialised.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if not (multihost or any(value is not None for value in explicit)
          or os.environ.get('JAX_COORDINATOR_ADDRESS')):
    return False
  # XLA:CPU has no cross-process collectives unless told which library to use; GPU and
  # TPU backends ignore this setting.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  return True


def is_primary() -> bool:
  """True in the process that writes logs, config.json and reports."""
  return jax.process_index() == 0


def barrier(name: str):
  """Waits until every process gets here (a no-op in a single process).

  The coordination service's barrier, not a device collective: XLA:CPU's gloo gives up
  on a first collective whose peers are 30 s late.
  """
  global _barriers
  _barriers += 1  # a barrier's key is used once; every process counts alike
  sync = orbax_multihost.get_barrier_sync_fn()
  sync(key=f'{name}_{_barriers}', timeout_ms=BARRIER_TIMEOUT_SECONDS * 1000)


def primary_first(build, name: str):
  """build() in process 0 first, then in the others (which then read what it built, e.g.
  a dataset on a shared disk that they would otherwise race it to write)."""
  if not is_primary():
    barrier(name)
  result = build()
  if is_primary():
    barrier(name)
  return result
