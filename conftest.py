"""Test-wide setup: four virtual CPU devices, so data-parallel code runs in any test.

The flag must be set before JAX is imported anywhere, which is why it lives here.
Single-device tests use jax.devices()[:1].
"""

import os

NUM_TEST_DEVICES = 4
_flag = f'--xla_force_host_platform_device_count={NUM_TEST_DEVICES}'
if _flag not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _flag).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
