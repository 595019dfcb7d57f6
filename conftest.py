"""Test-wide setup: four virtual CPU devices, so data-parallel code runs in any test.

The flag must be set before JAX is imported anywhere, which is why it lives here.
Single-device tests use jax.devices()[:1].
"""

import os

NUM_TEST_DEVICES = 4
# Tests compile far more than they run: LLVM's optimisation passes off cut the suite's
# compile-heavy files by a fifth (measured: test_two_phase_run + test_layout_independence,
# 73 s -> 60 s). XLA:CPU's older (LLVM) emitters in place of its fusion emitters cut a
# fifth again: seven heavy files at -n 3, alternated twice, 551/558 -> 439/441 s of CPU
# (EfficientNetV2-tiny's train step compiles in 2.1 s instead of 5.6-5.9 s). The programs
# compute the same things to round-off (a fused multiply-add here or there: bilinear
# sampling differs by up to 2 ulps); benchmarks and launchers keep XLA's defaults, which
# at full optimisation start no faster with the older emitters. The subprocesses that
# tests start inherit these flags (launcher_env.py).
# SKINJAX_TEST_XLA_OPTIMIZE=1 tests with XLA's defaults instead.
_optimize = os.environ.get('SKINJAX_TEST_XLA_OPTIMIZE') == '1'
_flags = [f'--xla_force_host_platform_device_count={NUM_TEST_DEVICES}']
if not _optimize:
  _flags.append('--xla_backend_optimization_level=0')
for _flag in _flags:
  if _flag.split('=')[0] not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _flag).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
if not _optimize:
  # XLA aborts on a flag it does not know, and the older emitters are the kind of thing a
  # later jaxlib drops: the launchers' probe (launch/xla_flags.py) adds the flag only where
  # this jaxlib starts with it, else tests run at XLA's default emitters (the header of
  # pytest's report shows the flags in use). The session's processes inherit XLA_FLAGS, so
  # only the first one probes (one subprocess).
  import sys
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'launch'))
  import xla_flags  # noqa: E402  (launch/ is not a package)
  xla_flags.apply(None, os.environ, flags=('--xla_cpu_use_fusion_emitters=false',))
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

# `make test`'s workers take whole files, each the next file in collection order when it is
# almost done (--no-loadscope-reorder in pyproject's addopts: xdist would otherwise order
# files by their number of tests, which sends a long file of few tests, such as
# test_demo.py, last). The longest files go first, longest first, so that none of them
# starts late and runs on alone while the other workers have nothing left: the rest of
# the suite, short files, fills in around them. (Seconds in a full run on this 2-core
# machine, 2026-12-07, heaviest first; a file missing here keeps its place after them.)
LONGEST_FIRST = (
    'test_reproduce.py',  # the tiny plan of both papers: 5 runs through the launchers
    'test_workdir_faults.py', 'test_interruptions.py', 'test_comparison_networks_training.py',
    'test_trainer.py', 'test_gpu_check.py', 'test_demo.py', 'test_evaluation.py',
    'test_multiprocess.py', 'test_efficientnet_v2_parity.py', 'test_conv_layers_benchmark.py',
    'test_data_parallel.py', 'test_layout_independence.py', 'test_resnet_parity.py',
    'test_conv2d.py', 'test_throughput_benchmark.py',
)


def pytest_report_header(config):
  del config
  return f'XLA_FLAGS: {os.environ.get("XLA_FLAGS", "")}'


def pytest_collection_modifyitems(config, items):
  """Moves the files of LONGEST_FIRST to the front, in its order (each file's tests stay
  together and in their own order)."""
  del config
  rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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
