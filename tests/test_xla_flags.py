"""The XLA flags a launcher adds (launch/xla_flags.py): added where this jaxlib accepts
them, never over the user's own, off with SKINJAX_XLA_FLAGS=0, probed once per jaxlib."""

import json
import logging
import os
from pathlib import Path
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'launch'))

import xla_flags  # noqa: E402

FLAG = xla_flags.CPU_FLAGS[0]
NAME = FLAG.split('=')[0]
BOGUS = '--xla_cpu_no_such_flag=1'


def _lines(caplog, level):
  return [r.getMessage() for r in caplog.records if r.levelno == level]


class Runner:
  """subprocess.run's stand-in: counts the probes, runs them for real unless told an exit
  status."""

  def __init__(self, returncode=None):
    self.calls, self.returncode = 0, returncode

  def __call__(self, command, **kwargs):
    self.calls += 1
    if self.returncode is None:
      return subprocess.run(command, **kwargs)
    return subprocess.CompletedProcess(command, self.returncode, '', '')


@pytest.fixture(scope='module')
def probed(tmp_path_factory):
  """A cache folder holding this jaxlib's real answer for FLAG (one real probe)."""
  folder = tmp_path_factory.mktemp('probed')
  assert xla_flags.accepted(FLAG, xla_flags._jaxlib_version(), str(folder))
  return folder


def test_an_accepted_flag_is_added_after_the_users_flags(caplog, tmp_path):
  runner, environ = Runner(), {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  with caplog.at_level(logging.INFO, logger='absl'):
    assert xla_flags.apply(str(tmp_path), environ, run=runner) == [FLAG]
  assert environ['XLA_FLAGS'] == f'--xla_force_host_platform_device_count=2 {FLAG}'
  assert runner.calls == 1
  assert _lines(caplog, logging.INFO) == [
      f'XLA flags: added {FLAG} (SKINJAX_XLA_FLAGS=0 turns this off)']
  assert _lines(caplog, logging.WARNING) == []


def test_the_users_own_setting_of_the_flag_wins(caplog, tmp_path):
  runner, environ = Runner(), {'XLA_FLAGS': f'{NAME}=default'}
  with caplog.at_level(logging.INFO, logger='absl'):
    assert xla_flags.apply(str(tmp_path), environ, run=runner) == []
  assert environ['XLA_FLAGS'] == f'{NAME}=default' and runner.calls == 0
  assert _lines(caplog, logging.INFO) == [
      f'XLA flags: none added; XLA_FLAGS sets {NAME} already (its value wins)']


def test_skinjax_xla_flags_0_adds_none(caplog, tmp_path):
  runner, environ = Runner(), {'SKINJAX_XLA_FLAGS': '0'}
  with caplog.at_level(logging.INFO, logger='absl'):
    assert xla_flags.apply(str(tmp_path), environ, run=runner) == []
  assert 'XLA_FLAGS' not in environ and runner.calls == 0
  assert _lines(caplog, logging.INFO) == ['XLA flags: none added (SKINJAX_XLA_FLAGS=0)']


def test_a_flag_this_jaxlib_refuses_is_left_out_with_one_warning(caplog, tmp_path):
  environ = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  with caplog.at_level(logging.INFO, logger='absl'):
    assert xla_flags.apply(str(tmp_path), environ, flags=(BOGUS,)) == []  # no raise
  assert environ['XLA_FLAGS'] == '--xla_force_host_platform_device_count=2'
  version = xla_flags._jaxlib_version()
  assert _lines(caplog, logging.WARNING) == [
      f'XLA flags: jaxlib {version} refuses {BOGUS}; left out (Unknown flag in XLA_FLAGS: '
      f'{BOGUS})']
  assert _lines(caplog, logging.INFO) == [
      f'XLA flags: none added; left out {BOGUS} (the warning above says why)']
  answers = json.loads((tmp_path / xla_flags.CACHE_FILE).read_text())
  assert answers == {f'jaxlib {version} {BOGUS}': False}


@pytest.mark.parametrize('failure', [subprocess.TimeoutExpired('python', 60),
                                     OSError('no python')])
def test_a_probe_that_cannot_answer_leaves_the_flag_out_uncached(caplog, tmp_path, failure):
  def run(*args, **kwargs):
    raise failure

  environ = {}
  with caplog.at_level(logging.WARNING, logger='absl'):
    assert xla_flags.apply(str(tmp_path), environ, run=run) == []
  assert 'XLA_FLAGS' not in environ and not (tmp_path / xla_flags.CACHE_FILE).exists()
  [warning] = _lines(caplog, logging.WARNING)
  assert warning.startswith(f'XLA flags: left out {FLAG} (')


def test_the_cached_answer_spares_a_second_probe(probed):
  runner = Runner(returncode=1)  # a probe now would refuse
  environ = {}
  assert xla_flags.apply(str(probed), environ, run=runner) == [FLAG]
  assert environ['XLA_FLAGS'] == FLAG and runner.calls == 0


@pytest.mark.parametrize('damage', ['{"jaxlib', '[1, 2]', '\x00\xff'])
def test_a_damaged_cache_file_is_probed_again(tmp_path, damage):
  (tmp_path / xla_flags.CACHE_FILE).write_text(damage)
  runner, environ = Runner(returncode=0), {}
  assert xla_flags.apply(str(tmp_path), environ, run=runner) == [FLAG]
  assert runner.calls == 1
  answers = json.loads((tmp_path / xla_flags.CACHE_FILE).read_text())
  assert answers == {f'jaxlib {xla_flags._jaxlib_version()} {FLAG}': True}


def test_a_cache_folder_that_cannot_be_written_only_probes_again(tmp_path):
  (tmp_path / 'a_file').write_text('')  # a folder under a file fails even as root
  runner = Runner(returncode=0)
  for _ in range(2):
    assert xla_flags.apply(str(tmp_path / 'a_file' / 'jax'), {}, run=runner) == [FLAG]
  assert runner.calls == 2


def _launcher_env(cache_dir, **extra):
  """The session's environment less its device count and cache (so the launcher's flags
  and probe cache are its own), on one CPU device."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(('JAX_COMPILATION_CACHE', 'SKINJAX_XLA_FLAGS'))}
  kept = [flag for flag in env.get('XLA_FLAGS', '').split()
          if not flag.startswith(('--xla_force_host_platform_device_count', NAME))]
  env.update(XLA_FLAGS=' '.join(kept), SKINJAX_CACHE_DIR=str(cache_dir), JAX_PLATFORMS='cpu',
             **extra)
  return env


def test_a_launcher_adds_the_flag_before_its_backend_starts(probed, tmp_path):
  result = subprocess.run(
      [sys.executable, str(REPO / 'launch' / 'evaluate.py'), f'--workdir={tmp_path}'],
      cwd=REPO, env=_launcher_env(probed), capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and 'no checkpoints' in result.stderr  # stops after start-up
  logged = [line.split('] ', 1)[-1] for line in result.stderr.splitlines()]
  added = logged.index(f'XLA flags: added {FLAG} (SKINJAX_XLA_FLAGS=0 turns this off)')
  platform = next(i for i, line in enumerate(logged) if line.startswith('JAX '))
  assert added < platform  # the platform line is the first backend's start


def test_the_flags_reach_xla_when_start_adds_them(tmp_path):
  """XLA reads XLA_FLAGS at the first backend, after `import jax`: a flag whose effect
  shows (the CPU device count) proves start() adds its flags in time."""
  program = ('import sys; sys.path.insert(0, "launch"); import jax, jax_startup, xla_flags; '
             'xla_flags.CPU_FLAGS = ("--xla_force_host_platform_device_count=3",); '
             'jax_startup.start(); print(jax.device_count())')
  result = subprocess.run([sys.executable, '-c', program], cwd=REPO, env=_launcher_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ['3']
