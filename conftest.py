"""Test-wide setup: four virtual CPU devices, so data-parallel code runs in any test.

The flag must be set before JAX is imported anywhere, which is why it lives here.
Single-device tests use jax.devices()[:1].
"""

import os

NUM_TEST_DEVICES = 4
# Tests compile far more than they run: LLVM's optimisation passes off cut the suite's
# compile-heavy files by a fifth (measured: test_two_phase_run + test_layout_independence,
# 73 s -> 60 s). The programs are the same; benchmarks and launchers keep XLA's default.
# SKINJAX_TEST_XLA_OPTIMIZE=1 tests with the default instead.
_flags = [f'--xla_force_host_platform_device_count={NUM_TEST_DEVICES}']
if os.environ.get('SKINJAX_TEST_XLA_OPTIMIZE') != '1':
  _flags.append('--xla_backend_optimization_level=0')
for _flag in _flags:
  if _flag.split('=')[0] not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _flag).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# The session's scratch: what its processes leave in the temporary folder goes into one
# folder of its own, removed when the session ends (TFDS leaves an empty folder there for
# every builder it constructs before preparing, hundreds a run; the builder tests leave
# their fake downloads). pytest's own tmp_path folders stay where they were, three runs kept.
SCRATCH_VARIABLE = 'SKINJAX_TEST_SCRATCH'
# Only the process that made it removes it: not xdist's workers (they inherit it), nor a
# session started inside another one with the variable set.
_MADE_THE_SCRATCH = SCRATCH_VARIABLE not in os.environ
if _MADE_THE_SCRATCH:
  import tempfile
  os.environ.setdefault('PYTEST_DEBUG_TEMPROOT', tempfile.gettempdir())
  os.environ[SCRATCH_VARIABLE] = tempfile.mkdtemp(prefix='skinjax_test_scratch_')
  os.environ['TMPDIR'] = os.environ[SCRATCH_VARIABLE]
  tempfile.tempdir = None  # gettempdir() reads TMPDIR again
  # Many tests (and the launchers they start) compile the same small programs: a
  # compilation cache shared by the session's processes compiles each once.
  if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
    os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.join(os.environ[SCRATCH_VARIABLE],
                                                           'xla_cache')
    os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.3'

import pytest  # noqa: E402


def pytest_unconfigure(config):
  """The session that made the scratch removes it, once every worker has ended."""
  del config
  if _MADE_THE_SCRATCH:
    import shutil
    shutil.rmtree(os.environ[SCRATCH_VARIABLE], ignore_errors=True)

# A new jitted program is lowered to MLIR once per compilation request, before the
# persistent cache is consulted; counting lowerings counts compilations that the cache
# could otherwise hide.
LOWERING_EVENT = '/jax/core/compile/jaxpr_to_mlir_module_duration'


@pytest.fixture
def compile_counter():
  """A list that gains one entry per program compiled (lowered) while the test runs."""
  import jax.monitoring
  compiles, active = [], [True]

  def listener(event, duration, **kwargs):
    if active[0] and event == LOWERING_EVENT:
      compiles.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  yield compiles
  active[0] = False
