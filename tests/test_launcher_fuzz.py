"""Every command line either starts a run or ends in one `error:` line naming the flag or
field and what it expected: fuzzed in-process through the train launcher's own
parse-and-check entry (hundreds of cases), then a handful of real launcher processes
(exit status 2, nothing written to the workdir)."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'launch'))
import common_flags  # noqa: E402
import train as train_launcher  # noqa: E402
from skinjax.data import catalog  # noqa: E402
from skinjax.models import MODELS  # noqa: E402
from skinjax.train.spec import AUGMENTATIONS, ConfigError, RunSpec  # noqa: E402
import launcher_env  # noqa: E402


CONFIGS = sorted(str(path) for path in (REPO / 'launch' / 'configs').glob('*.py'))
FIELDS = [field.name for field in dataclasses.fields(RunSpec)]
# Paths the fuzz sets beyond the top-level fields, and misspellings of them.
NESTED = ['phases[0].epochs', 'phases[0].learning_rate', 'phases[1].epochs', 'phases[0].lr',
          'normalization.mean', 'normalization.std', 'model_kwargs.base_width',
          'model_kwargs.depth', 'model_kwargs.dropout_rate', 'btach_size', 'modle']
CHOICES = sorted(MODELS) + list(catalog.DATASETS) + list(AUGMENTATIONS) + [
    'classification', 'segmentation', 'jaccard', 'dice', 'bce', 'softmax_cross_entropy',
    'images', 'with_masks', 'all9', 'benign_malignant', 'paper', 'lesion', 'paper1', 'pmap',
    'jit', 'float32', 'bfloat16', 'device', 'stream', 'auto', 'accuracy', 'dice', 'min']
VALUES = st.one_of(
    st.integers(-10**6, 10**6).map(str), st.sampled_from(['0', '1', '7', '8', '64', '1e3']),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(CHOICES), st.sampled_from(['True', 'False', 'yes', '', 'None']),
    st.sampled_from(['(1, 2)', '(0.5, 0.5, 0.5)', '(1, 2, 3, 4)', '[]', '()', "('a',)",
                     '{}', "{'x': 1}"]),
    st.text(alphabet='abc_./0123456789-', max_size=8))
OVERRIDES = st.lists(st.tuples(st.sampled_from(FIELDS + NESTED), VALUES), max_size=4)
OTHER_FLAGS = st.lists(st.sampled_from([
    '--seed=3', '--parallel=jit', '--num_processes=2', '--process_id=3', '--process_id=-1',
    '--multihost=maybe', '--nosuchflag', 'positional', '--data_dir=', '--manual_dir=/no/such',
    '--config.phases[9].epochs=1']), max_size=2)


def check(argv, workdir: Path):
  """The property: an Invocation, or a one-line error naming a flag; nothing written."""
  try:
    invocation = train_launcher.parse_and_check(argv, num_devices=4, process_count=1)
  except (common_flags.CommandLineError, ConfigError) as error:
    message = str(error)
    assert '\n' not in message and message, message
    assert message.startswith('--') or message.startswith('unexpected arguments'), message
  else:
    assert isinstance(invocation.spec, RunSpec)
  assert not any(workdir.iterdir()), 'the check wrote into the workdir'


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 400)), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(config=st.sampled_from(CONFIGS), overrides=OVERRIDES, other=OTHER_FLAGS)
def test_every_command_line_starts_or_names_its_mistake_in_one_line(tmp_path, config,
                                                                     overrides, other):
  workdir = tmp_path / 'run'
  workdir.mkdir(exist_ok=True)
  argv = ['train.py', f'--config={config}', f'--workdir={workdir}',
          *[f'--config.{path}={value}' for path, value in overrides], *other]
  check(argv, workdir)


@pytest.mark.parametrize('argv', [
    ['--config=launch/configs/nosuch.py'],
    ['--config=README.md'],
    [],
])
def test_a_config_file_that_cannot_be_loaded_is_named(tmp_path, argv):
  with pytest.raises(common_flags.CommandLineError, match=r'^--config'):
    train_launcher.parse_and_check(['train.py', f'--workdir={tmp_path}', *argv])


def launch(*args):
  env = launcher_env.with_devices(4)
  return subprocess.run([sys.executable, str(REPO / 'launch' / 'train.py'), *args],
                        capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


@pytest.mark.parametrize('args,expected', [
    (['--config.batch_size=abc'], 'error: --config.batch_size=abc: expected an integer'),
    (['--config.btach_size=8'], 'error: --config.btach_size: unknown field; did you mean '
                                '--config.batch_size?'),
    (['--seed=3'], "error: --seed: not a flag; a run's field is set as --config.seed"),
    (['--config.model=unet'], "error: --config.task=classification: model 'unet' is a "
                              'segmentation model'),
    (['--config.batch_size=6'], 'error: --config.batch_size=6: must be a positive multiple '
                                'of the 4 device(s)'),
    (['--config.loss=dice'], "error: --config.loss='dice': a classification run uses one of "
                             'softmax_cross_entropy'),
])
def test_the_launcher_ends_a_mistake_in_one_line_and_writes_nothing(tmp_path, args, expected):
  workdir = tmp_path / 'run'
  result = launch('--config=launch/configs/deepconvnet_ham10000.py', f'--workdir={workdir}',
                  *args)
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert errors == [expected], result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  assert not workdir.exists()
