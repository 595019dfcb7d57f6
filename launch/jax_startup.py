"""What every launcher does once JAX is first needed: XLA's flags, the persistent
compilation cache, and one line naming the platform and devices it runs on.

  jax_startup.start()  # after the multi-process initialise, before anything starts a backend

XLA flags: launch/xla_flags.py's (measured faster on XLA:CPU), added to XLA_FLAGS before
the first backend starts, which is when XLA reads them (`import jax` and
`jax.distributed.initialize` do not); `SKINJAX_XLA_FLAGS=0` adds none.

Compilation cache: JAX keeps compiled programs in `$SKINJAX_CACHE_DIR` (default
`~/.cache/skinjax/jax`), so a second start of the same run skips most of its compiling.
`SKINJAX_COMPILATION_CACHE=0` turns it off; a JAX_COMPILATION_CACHE_DIR already set
wins (the tests set one per session). A folder that cannot be written leaves the cache off
with one warning line.

Platform: one line, e.g. `JAX 0.10.2 on gpu: 1 device (NVIDIA H200), process 1 of 1`.
When nvidia-smi finds a GPU but JAX runs on the CPU, one warning line says why and how to
fix it. Nothing here raises: a launcher never fails for what it only reports.
"""

import collections
import importlib.metadata
import os
import shutil
import subprocess
import tempfile

from absl import logging
import jax

import xla_flags

# JAX's own default: programs compiled faster than this are not worth a disk read.
MIN_COMPILE_SECONDS = 1.0
# CUDA 13 wheels need this driver or newer; older drivers get CUDA 12's.
CUDA13_DRIVER = 580


def start() -> None:
  """XLA's flags, the compilation cache, then the platform line (and a warning where a GPU
  is idle)."""
  for step in (add_xla_flags, enable_compilation_cache, log_platform):
    try:
      step()
    except Exception as error:  # noqa: BLE001 - reporting must never stop a launcher
      logging.warning('start-up: %s failed (%s: %s)', step.__name__, type(error).__name__,
                      error)


def default_cache_dir(environ=os.environ) -> str:
  return environ.get('SKINJAX_CACHE_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'skinjax', 'jax')


def add_xla_flags(environ=os.environ) -> list[str]:
  """xla_flags.apply, its probe's answers kept in the compilation cache's folder (also with
  SKINJAX_COMPILATION_CACHE=0: a file of a few bytes); the flags added. Before anything
  starts a backend: XLA reads XLA_FLAGS then, once."""
  cache_dir = environ.get('JAX_COMPILATION_CACHE_DIR') or default_cache_dir(environ)
  return xla_flags.apply(cache_dir, environ)


def enable_compilation_cache(environ=os.environ) -> str | None:
  """Turns JAX's persistent compilation cache on; its folder, or None when it is off."""
  if environ.get('SKINJAX_COMPILATION_CACHE') == '0':
    jax.config.update('jax_enable_compilation_cache', False)
    logging.info('compilation cache: off (SKINJAX_COMPILATION_CACHE=0)')
    return None
  given = jax.config.jax_compilation_cache_dir
  if given:
    logging.info('compilation cache: %s (JAX_COMPILATION_CACHE_DIR)', given)
    return given
  folder = default_cache_dir(environ)
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):  # writable, not only present
      pass
  except OSError as error:
    logging.warning('compilation cache: off (%s cannot be written: %s); set '
                    'SKINJAX_CACHE_DIR to a writable folder, or SKINJAX_COMPILATION_CACHE=0',
                    folder, error.strerror or error)
    return None
  jax.config.update('jax_compilation_cache_dir', folder)
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in environ:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECONDS)
  logging.info('compilation cache: %s (SKINJAX_COMPILATION_CACHE=0 turns it off)', folder)
  return folder


def platform_line() -> str:
  """`JAX <version> on <platform>: <n> devices (<kinds>), process <i> of <n>`."""
  devices = jax.devices()
  kinds = collections.Counter(device.device_kind for device in devices)
  named = ', '.join(kind if count == 1 else f'{count} x {kind}'
                    for kind, count in kinds.items())
  count = len(devices)
  return (f'JAX {jax.__version__} on {jax.default_backend()}: {count} '
          f'device{"s" if count != 1 else ""} ({named}), process '
          f'{jax.process_index() + 1} of {jax.process_count()}')


def nvidia_gpus() -> list[tuple[str, str]]:
  """(name, driver version) of each GPU nvidia-smi lists; [] when it is missing or fails."""
  if shutil.which('nvidia-smi') is None:
    return []
  try:
    done = subprocess.run(
        ['nvidia-smi', '--query-gpu=name,driver_version', '--format=csv,noheader'],
        capture_output=True, text=True, timeout=20, check=False)
  except (OSError, subprocess.SubprocessError):
    return []
  if done.returncode != 0:
    return []
  gpus = []
  for line in done.stdout.splitlines():
    name, _, driver = (part.strip() for part in line.rpartition(','))
    if name and driver[:1].isdigit():
      gpus.append((name, driver))
  return gpus


def cuda_extra(driver: str) -> str:
  """The pyproject extra whose CUDA build runs on an NVIDIA driver of this version."""
  try:
    major = int(driver.split('.')[0])
  except ValueError:
    return 'cuda12'
  return 'cuda13' if major >= CUDA13_DRIVER else 'cuda12'


def _cuda_plugins() -> list[str]:
  found = []
  for name in ('jax-cuda12-plugin', 'jax-cuda13-plugin'):
    try:
      importlib.metadata.version(name)
      found.append(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return found


def idle_gpu_warning(environ=os.environ) -> str | None:
  """One line when nvidia-smi finds a GPU and JAX runs on none: why, and the fix."""
  if any(device.platform == 'gpu' for device in jax.devices()):
    return None
  gpus = nvidia_gpus()
  if not gpus:
    return None
  name, driver = gpus[0]
  found = f'nvidia-smi finds {len(gpus)} GPU{"s" if len(gpus) > 1 else ""} ({name}, ' \
          f'driver {driver}) but JAX runs on the {jax.default_backend().upper()}'
  platforms = environ.get('JAX_PLATFORMS', '')
  if platforms and not {'cuda', 'gpu'} & set(platforms.split(',')):
    return f'{found}: JAX_PLATFORMS={platforms} keeps it there; unset it to use the GPU'
  fix = f"pip install -e '.[{cuda_extra(driver)}]' (or make clean setup)"
  plugins = _cuda_plugins()
  if plugins:
    return (f'{found}: {", ".join(plugins)} is installed but did not start (JAX\'s warning '
            f'above says why); for driver {driver}: {fix}')
  return f'{found}: JAX\'s CUDA build is not installed; {fix}'


def log_platform(environ=os.environ) -> None:
  logging.info('%s', platform_line())
  warning = idle_gpu_warning(environ)
  if warning:
    logging.warning('%s', warning)
