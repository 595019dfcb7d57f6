"""The environment of a launcher or worker process that a test starts: the session's XLA
settings (conftest.py) with that process's own number of virtual devices."""

import os

DEVICE_FLAG = '--xla_force_host_platform_device_count'
OPTIMIZATION_FLAG = '--xla_backend_optimization_level'
EMITTERS_FLAG = '--xla_cpu_use_fusion_emitters'


def with_devices(devices: int, *, optimized: bool = False, fusion_emitters: bool = False,
                 **extra) -> dict:
  """optimized: XLA's defaults, not the session's compile-time settings (conftest.py).
  fusion_emitters: XLA:CPU's default code generator, the session's optimisation level."""
  dropped = (DEVICE_FLAG,)
  if optimized or fusion_emitters:
    dropped += (EMITTERS_FLAG,)
  if optimized:
    dropped += (OPTIMIZATION_FLAG,)
  flags = [flag for flag in os.environ.get('XLA_FLAGS', '').split()
           if not flag.startswith(dropped)]
  return dict(os.environ, XLA_FLAGS=' '.join(flags + [f'{DEVICE_FLAG}={devices}']), **extra)
