"""A workdir is one run's, whatever happens, tried with real launcher processes and files:
a second run on a workdir in use is refused naming the first; a killed run leaves no stale
lock and its unfinished writes are cleaned; a resume that changes what the run computes is
refused field by field, leaving config.json as it was; a damaged checkpoint (truncated,
removed, overwritten) is passed over for the intact one before it, by a resume and by
`evaluate`, and `evaluate --step=N` on it names it and the intact steps."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.train.checkpoint import Checkpointer
from skinjax.train.workdir import checkpoint_dir
from training_runs import classifier_spec, train_only
import launcher_env

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'launch' / 'configs' / 'deepconvnet_ham10000.py'


def launcher(script, *args, wait=True, log=None):
  env = launcher_env.with_devices(4)
  command = [sys.executable, str(REPO / 'launch' / script), *map(str, args)]
  if not wait:
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
  return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)


def train_args(workdir, layouts, *overrides, epochs=30):
  return [f'--config={CONFIG}', f'--workdir={workdir}', f'--data_dir={layouts["data_dir"]}',
          f'--manual_dir={layouts["ham10000"]}', '--config.batch_size=8',
          '--config.eval_batch_size=8', f'--config.phases[0].epochs={epochs}', *overrides]


def error_lines(result):
  return [line for line in result.stderr.splitlines() if line.startswith('error:')]


def wait_for(condition, timeout=300):
  start = time.monotonic()
  while not condition():
    assert time.monotonic() - start < timeout, 'timed out'
    time.sleep(0.5)


@pytest.fixture(scope='module')
def interrupted_workdir(layouts, tmp_path_factory):
  """A launcher run of 30 epochs refused a second writer, then was SIGKILLed mid-run; a
  third start found a stray unfinished write, cleaned it, and finished the run, shortened
  to one epoch past the epochs done (a resume may shorten the last phase to no fewer).
  Returns (workdir, the second run's result, the first's pid, what the third removed, the
  third's result, the run's epochs)."""
  workdir = tmp_path_factory.mktemp('shared') / 'run'
  log = open(workdir.parent / 'first.log', 'w')
  first = launcher('train.py', *train_args(workdir, layouts), wait=False, log=log)
  try:
    # The first holds the lock and has checkpointed an epoch: it is mid-run.
    wait_for(lambda: (workdir / 'metrics.jsonl').exists()
             and (workdir / 'metrics.jsonl').read_text().strip())
    config_before = (workdir / 'config.json').read_bytes()
    second = launcher('train.py', *train_args(workdir, layouts))
    assert (workdir / 'config.json').read_bytes() == config_before
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
    log.close()
  stray = Path(checkpoint_dir(str(workdir))) / '99.orbax-checkpoint-tmp-1700000000'
  stray.mkdir()
  (stray / 'partial').write_text('half a write')
  # No fewer epochs than the killed run checkpointed: it logs each epoch as it ends.
  epochs = len((workdir / 'metrics.jsonl').read_text().splitlines()) + 1
  third = launcher('train.py', *train_args(workdir, layouts, epochs=epochs))
  assert third.returncode == 0, third.stderr[-3000:]
  assert f'resuming with a change: --config.phases[0].epochs 30 -> {epochs}' in third.stderr
  return workdir, second, first.pid, stray, third, epochs


def test_a_second_run_on_a_workdir_in_use_is_refused_naming_the_first(interrupted_workdir):
  _, second, pid, _, _, _ = interrupted_workdir
  assert second.returncode == 2, second.stderr[-2000:]
  (line,) = error_lines(second)
  assert re.match(rf'error: --workdir=\S+: another run is writing there \(host '
                  rf'{re.escape(socket.gethostname())} pid {pid} since .*\); wait for it to '
                  r'end, or give another --workdir$', line), line


def test_a_killed_run_leaves_no_stale_lock_and_its_unfinished_writes_are_cleaned(
    interrupted_workdir):
  workdir, _, _, stray, third, run_epochs = interrupted_workdir
  assert 'resuming from step' in third.stderr
  assert not stray.exists()
  assert not [p for p in Path(checkpoint_dir(str(workdir))).iterdir() if 'tmp' in p.name]
  epochs = [json.loads(line)['epoch'] for line in (workdir / 'metrics.jsonl').open()]
  assert epochs == list(range(run_epochs))  # one record per epoch, in order


@pytest.mark.parametrize('override,change', [
    ('--config.phases[0].learning_rate=0.01', r'--config.phases\[0\].learning_rate 0.001 -> '
                                               r'0.01'),  # the optimiser
    ('--config.augment=none', r"--config.augment 'paper1_classification' -> 'none'"),  # data
    ('--config.dtype=bfloat16', r"--config.dtype 'float32' -> 'bfloat16'"),  # the model
    ('--config.batch_size=16', r'--config.batch_size 8 -> 16'),  # the schedule
])
def test_a_resume_that_changes_what_the_run_computes_is_refused(interrupted_workdir, layouts,
                                                               override, change):
  workdir, epochs = interrupted_workdir[0], interrupted_workdir[-1]
  before = {name: (workdir / name).read_bytes() for name in ('config.json', 'metrics.jsonl')}
  steps = Checkpointer(checkpoint_dir(str(workdir)), read_only=True).all_steps()
  result = launcher('train.py', *train_args(workdir, layouts, override, epochs=epochs))
  assert result.returncode == 2, result.stderr[-2000:]
  (line,) = error_lines(result)
  assert re.search(rf'^error: the workdir holds a run with other settings \({change}\); a '
                   r'resume may change only .*start a new run in another --workdir$', line), line
  assert {name: (workdir / name).read_bytes() for name in before} == before
  assert Checkpointer(checkpoint_dir(str(workdir)), read_only=True).all_steps() == steps


def test_a_resume_may_extend_the_run_and_change_how_it_checkpoints(interrupted_workdir,
                                                                   layouts):
  workdir, epochs = interrupted_workdir[0], interrupted_workdir[-1]
  result = launcher('train.py', *train_args(workdir, layouts,
                                            '--config.checkpoint_every_steps=3',
                                            epochs=epochs + 1))
  assert result.returncode == 0, result.stderr[-2000:]
  assert (f'resuming with a change: --config.phases[0].epochs {epochs} -> {epochs + 1}'
          in result.stderr)
  assert 'resuming with a change: --config.checkpoint_every_steps 0 -> 3' in result.stderr
  assert json.loads((workdir / 'config.json').read_text())['config']['phases'][0]['epochs'] == (
      epochs + 1)


def damage(step_dir: Path, how: str):
  """Damages the largest array file of a checkpoint step as a disk or a user might."""
  victim = max((p for p in (step_dir / 'state').rglob('*') if p.is_file()),
               key=lambda p: p.stat().st_size)
  if how == 'truncated':
    victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])
  elif how == 'removed':
    victim.unlink()
  else:
    victim.write_bytes(os.urandom(victim.stat().st_size))
  return victim


@pytest.mark.parametrize('how', ['truncated', 'removed', 'overwritten'])
def test_evaluate_passes_over_a_damaged_checkpoint_and_names_it_when_asked_for_it(
    classifier_run, tmp_path, caplog, how):
  workdir = tmp_path / 'run'
  shutil.copytree(classifier_run[0], workdir)
  steps = Checkpointer(checkpoint_dir(str(workdir)), read_only=True).all_steps()
  latest, intact = steps[-1], steps[:-1]
  damage(workdir / 'checkpoints' / str(latest), how)
  passed_over = (rf'checkpoint step\(s\) {latest} \(.*\) in \S+ are damaged; loaded step '
                 rf'{intact[-1]} instead; {latest - intact[-1]} steps of work lost')
  if how != 'truncated':
    # What evaluate.py runs, in-process: the launcher around it (its output, the damaged step
    # asked for by number) is the same for every damage, tried once, on the truncated step.
    with caplog.at_level('WARNING'):
      evaluation = evaluate_workdir(str(workdir), step='latest')
    assert re.search(passed_over, caplog.text), caplog.text[-3000:]
    assert evaluation.run.step == intact[-1] and len(evaluation.target.arrays) == 7
    return
  result = launcher('evaluate.py', f'--workdir={workdir}', '--step=latest')
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(passed_over, result.stderr), result.stderr[-3000:]
  assert 'test metrics (7 examples)' in result.stdout
  asked = launcher('evaluate.py', f'--workdir={workdir}', f'--step={latest}')
  assert asked.returncode == 2
  (line,) = error_lines(asked)
  assert line.startswith(f'error: --step={latest}: no checkpoint in ') and line.endswith(
      f'intact steps: {", ".join(map(str, intact))}'), line
  assert 'Traceback' not in asked.stderr


def test_a_resume_passes_over_a_damaged_latest_checkpoint_and_sets_it_aside(
    classifier_run, layouts, tmp_path, caplog):
  workdir = tmp_path / 'run'
  shutil.copytree(classifier_run[0], workdir)
  steps = Checkpointer(checkpoint_dir(str(workdir)), read_only=True).all_steps()
  damage(workdir / 'checkpoints' / str(steps[-1]), 'truncated')
  with caplog.at_level('WARNING'):
    train_only(classifier_spec(epochs=3), workdir, layouts)
  assert f'loaded step {steps[-2]} instead' in caplog.text
  assert list((workdir / 'checkpoints').glob(f'{steps[-1]}.damaged-*'))
  final = Checkpointer(checkpoint_dir(str(workdir)), read_only=True).all_steps()
  assert steps[-1] in final and final[-1] > steps[-1]  # the step was written anew
