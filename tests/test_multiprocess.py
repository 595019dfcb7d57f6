"""Two processes with two CPU devices each (jax.distributed, gloo collectives on localhost)
train like one process with four devices on the same global batches.

The run goes through the real trainer: each process reading only its own data shard,
augmentation, Adam, orbax checkpoints from both processes, global evaluation with padded
last batches, and the report's predictions gathered to process 0."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import launcher_env
from skinjax.train.metric_writer import read_history
from skinjax.evaluation.restore import restore_run


WORKER = Path(__file__).with_name('multiprocess_worker.py')
REPO = WORKER.parents[1]


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    return sock.getsockname()[1]


def run_processes(out, *extra, num_processes=2, devices=2, timeout=300):
  """Starts the worker as `num_processes` processes of `devices` CPU devices; all must
  succeed. XLA's default optimisation: runs compared across layouts agree to round-off
  there, and Adam turns other round-off (of near-zero gradients) into steps of its size."""
  env = launcher_env.with_devices(devices, optimized=True, JAX_PLATFORMS='cpu',
                                  PYTHONPATH=str(REPO))
  env.pop('JAX_COMPILATION_CACHE_DIR', None)  # programs of another device assignment
  port = free_port()
  logs = [Path(out) / f'process_{i}.log' for i in range(num_processes)]
  Path(out).mkdir(parents=True, exist_ok=True)
  # Output to files, not pipes: a process blocked on a full pipe that nobody reads
  # would stall the others in their next collective.
  processes = [subprocess.Popen(
      [sys.executable, str(WORKER), str(i), str(num_processes), str(port), str(out),
       *extra], env=env, stdout=log.open('w'), stderr=subprocess.STDOUT)
      for i, log in enumerate(logs)]
  try:
    for process in processes:
      process.wait(timeout=timeout)
  finally:
    for process in processes:  # one failed process leaves the others waiting for it
      if process.poll() is None:
        process.kill()
        process.wait()
  for i, (process, log) in enumerate(zip(processes, logs)):
    assert process.returncode == 0, f'process {i}:\n{log.read_text()[-3000:]}'


def assert_trees_close(actual, expected, rtol=1e-5):
  """As in test_data_parallel: rtol per element, floored at rtol times the tree's scale
  (reductions in another order differ by float32 round-off)."""
  scale = max(float(np.abs(x).max()) for x in expected.values())
  for key, value in expected.items():
    np.testing.assert_allclose(actual[key], value, rtol=rtol, atol=rtol * scale, err_msg=key)


def flat(params):
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def test_a_two_process_run_checkpoints_what_a_one_process_run_does_and_only_process_0_logs(
    layouts, tmp_path):
  # One process of 4 devices reading the data in 2 shards, as 2 processes do by default;
  # it also builds the dataset the workers read.
  run_processes(tmp_path / 'one', layouts['data_dir'], layouts['ham10000'], '2',
                num_processes=1, devices=4)
  reference = json.loads((tmp_path / 'one' / 'writes_0.json').read_text())['test_metrics']
  run_processes(tmp_path / 'two', layouts['data_dir'], layouts['ham10000'])
  workdir = tmp_path / 'two' / 'workdir'
  two, one = restore_run(str(workdir), step='latest'), restore_run(
      str(tmp_path / 'one' / 'workdir'), step='latest')
  assert two.step == one.step == 6  # 2 epochs of 3 steps
  assert_trees_close(flat(two.state.params), flat(one.state.params))
  # Logs and the report come from process 0 alone: one line per epoch, one event file.
  assert [record['epoch'] for record in read_history(str(workdir))] == [0, 1]
  assert len(list((workdir / 'tensorboard').glob('events.out.tfevents.*'))) == 1
  writes = [json.loads((tmp_path / 'two' / f'writes_{i}.json').read_text()) for i in (0, 1)]
  # Each process gathered only its own shard (rows p, p + 2, ...) of every split; between
  # them, every validation and test example was read.
  for name, size in writes[0]['split_sizes'].items():
    read = [set(w['rows_read'][name]) for w in writes]
    assert read[0] and read[1], name
    for process, rows in enumerate(read):
      assert {row % 2 for row in rows} == {process}, (name, process)
    if name != 'train':  # training drops a partial last batch
      assert read[0] | read[1] == set(range(size)), name
  assert {'metrics.jsonl', 'config.json.tmp', 'report/test/report.json.tmp'} <= set(
      writes[0]['writes'])
  assert writes[1]['writes'] == []
  report = json.loads((workdir / 'report' / 'test' / 'report.json').read_text())
  assert report['examples'] == 7 and np.array(report['confusion_matrix']).sum() == 7
  # Test metrics are global, and every process returns the same ones.
  assert writes[0]['test_metrics'] == writes[1]['test_metrics']
  assert writes[0]['test_metrics']['accuracy'] == pytest.approx(reference['accuracy'])
  assert writes[0]['test_metrics']['loss'] == pytest.approx(reference['loss'], rel=1e-4)
