"""The environment of a launcher or worker process that a test starts: the session's XLA
settings (conftest.py) with that process's own number of virtual devices."""

import os

DEVICE_FLAG = '--xla_force_host_platform_device_count'
OPTIMIZATION_FLAG = '--xla_backend_optimization_level'


def with_devices(devices: int, *, optimized: bool = False, **extra) -> dict:
  """optimized: XLA's default optimisation level, not the session's (conftest.py)."""
  dropped = (DEVICE_FLAG, OPTIMIZATION_FLAG) if optimized else (DEVICE_FLAG,)
  flags = [flag for flag in os.environ.get('XLA_FLAGS', '').split()
           if not flag.startswith(dropped)]
  return dict(os.environ, XLA_FLAGS=' '.join(flags + [f'{DEVICE_FLAG}={devices}']), **extra)
