"""benchmarks/conv_layers.py: it times every dense convolution a model has, as often as the
model has it, and leaves the grouped ones to benchmarks/depthwise.py; beside TensorFlow's
timings where TensorFlow imports (B3's run), without that column where it does not (the
others, TensorFlow hidden)."""

import collections
import os
from pathlib import Path
import subprocess
import sys

import jax
import pytest

from skinjax.models import create_model
from skinjax.train.state import init_variables
from hidden_imports import hiding_folder

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def without_tensorflow(tmp_path_factory):
  """A PYTHONPATH folder whose sitecustomize hides TensorFlow: the TensorFlow column of one
  run (B3's) is enough, and its import and per-layer tf.functions are most of a run."""
  return hiding_folder(tmp_path_factory.mktemp('hide_tensorflow'), ['tensorflow'],
                       'tests/test_conv_layers_benchmark.py')


def _dense_kernels(name, size, **kwargs):
  """(kernel side, C_in, C_out) of every 4-D `kernel` parameter, less those the benchmark
  leaves out: EfficientNetV2's depthwise layers (`dwconv*` modules) and U-Net's transposed
  convolutions (`upsample*`)."""
  params = init_variables(jax.random.key(0), create_model(name, **kwargs),
                          (1, size, size, 3))['params']
  return collections.Counter(
      (leaf.shape[0],) + tuple(leaf.shape[2:])
      for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
      if path[-1].key == 'kernel' and leaf.ndim == 4
      and not any(str(p.key).startswith(('upsample', 'dwconv')) for p in path))


def _timed_layers(model, size, *flags, hide=None):
  """The (kernel side, C_in, C_out) counts the benchmark timed; hide: a without_tensorflow
  folder, for a run without TensorFlow's column (else that column must be filled)."""
  done = subprocess.run(
      [sys.executable, str(REPO / 'benchmarks' / 'conv_layers.py'), f'--model={model}',
       f'--image_size={size}', '--batch_size=1', '--windows=1', '--min_window_s=0.001',
       *flags], capture_output=True, text=True, timeout=300,
      env={**os.environ, 'PYTHONPATH': os.pathsep.join(
          ([hide] if hide else []) + [str(REPO), str(REPO / 'benchmarks')])})
  assert done.returncode == 0, done.stderr[-3000:]
  lines = done.stdout.splitlines()
  rows = [[cell.strip() for cell in line.split('|')[1:9]] for line in lines
          if line.startswith('| ') and not line.startswith('| **total**') and 'x' in line
          and line.split('|')[2].strip().endswith(tuple('0123456789'))]
  assert rows
  for *_, tf_ms, ratio in rows:  # TensorFlow's time and the ratio, '-' without TensorFlow
    if hide:
      assert (tf_ms, ratio) == ('-', '-')
    else:
      assert float(tf_ms) > 0 and ratio.endswith('x')
  timed, weighted = collections.Counter(), collections.Counter()
  for shape, kernel, _, width, count, ms, _, _ in rows:
    side = int(kernel.split('x')[0])
    timed[(side, int(shape.split('x')[-1]), int(width))] += int(count)
    weighted[f'{side}x{side}'] += int(count) * float(ms)
  # One total per kernel side and one over all, each the rows' count-weighted sum (the rows
  # show 2 decimals, the totals 1).
  totals = {cells[1]: float(cells[5]) for cells in (
      [cell.strip() for cell in line.split('|')[1:7]] for line in lines
      if line.startswith('| **total**'))}
  assert set(totals) == set(weighted) | {''}
  for side, total in weighted.items():
    assert abs(totals[side] - total) <= 0.05 + 0.005 * timed.total()
  assert abs(totals[''] - sum(weighted.values())) <= 0.05 + 0.005 * timed.total()
  return timed


def test_every_unet_convolution_is_timed(without_tensorflow):
  assert _timed_layers('unet_tiny', 16, hide=without_tensorflow) == _dense_kernels(
      'unet_tiny', 16)


def test_b3_style_convolutions_without_the_depthwise_ones():
  timed = _timed_layers('efficientnetv2_tiny_skin', 32, '--num_classes=3')
  assert timed == _dense_kernels('efficientnetv2_tiny_skin', 32, num_classes=3)
  assert set(side for side, _, _ in timed) == {1, 3}


def test_kernel_sizes_selects_rows(without_tensorflow):
  timed = _timed_layers('efficientnetv2_tiny_skin', 32, '--num_classes=3', '--kernel_sizes=3',
                        hide=without_tensorflow)
  assert timed and all(side == 3 for side, _, _ in timed)


def test_unknown_model_is_one_line():
  done = subprocess.run(
      [sys.executable, str(REPO / 'benchmarks' / 'conv_layers.py'), '--model=resnet9000'],
      capture_output=True, text=True, timeout=120,
      env={**os.environ, 'PYTHONPATH': os.pathsep.join([str(REPO), str(REPO / 'benchmarks')])})
  assert done.returncode != 0
  assert '--model=' in done.stderr and 'Traceback' not in done.stderr
