"""`make gpu-check` (benchmarks/gpu_check.py) runs at its tiny size where TensorFlow, TFDS,
Keras and ml_collections cannot be imported, as on the lent GPU machine, and writes its
results with one line per GPU goal."""

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

from hidden_imports import hiding_folder

REPO = Path(__file__).resolve().parents[1]
HIDDEN = ('tensorflow', 'tensorflow_datasets', 'keras', 'ml_collections')
TITLES = ('DeepConvNet @28 training, bfloat16, device-resident data',
          'U-Net (width 64) @224 training, bfloat16',
          "EfficientNetV2-B3 @300 training, bfloat16, vs timm's best row")


@pytest.fixture(scope='module')
def without_tensorflow(tmp_path_factory):
  """The environment of a process in which HIDDEN cannot be imported."""
  folder = hiding_folder(tmp_path_factory.mktemp('hide_tensorflow'), HIDDEN,
                         'tests/test_gpu_check.py')
  return dict(os.environ, PYTHONPATH=os.pathsep.join(
      [folder, str(REPO)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))


@pytest.fixture(scope='module')
def tiny_check(without_tensorflow, tmp_path_factory):
  out = tmp_path_factory.mktemp('gpu_check')
  done = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'gpu_check.py'), '--tiny',
                         f'--output_dir={out}'], cwd=REPO, env=without_tensorflow,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
  [md] = out.glob('*.md')
  return md.read_text(), json.loads(md.with_suffix('.json').read_text())


@pytest.mark.parametrize('name', HIDDEN)
def test_the_hidden_modules_do_not_import(without_tensorflow, name):
  done = subprocess.run([sys.executable, '-c', f'import {name}'], env=without_tensorflow,
                        capture_output=True, text=True)
  assert done.returncode != 0 and 'is hidden' in done.stderr


def test_each_goal_has_one_line_under_the_title(tiny_check):
  md, _ = tiny_check
  assert md.startswith('# Throughput on ') and md.index('## GPU goals') < md.index('| model')
  goals = md.split('## GPU goals', 1)[1].split('| model', 1)[0]
  for name in TITLES:
    [line] = [line for line in goals.splitlines() if f'  {name}: ' in line]
    assert line.split()[1] in ('PASS', 'FAIL', 'NO')  # NO FIGURE: a tiny CPU run has no peak


def test_every_goal_ran_its_skinjax_rows(tiny_check):
  _, results = tiny_check
  goals = results['meta']['goals']
  assert [goal['title'] for goal in goals] == list(TITLES)
  assert all(goal['status'] != 'NOT RUN' for goal in goals)
  trained = {(r['model'], r['dtype'], r['data']) for r in results['rows']
             if r['framework'] == 'skinjax' and r['images_per_s'] > 0}
  assert trained == {('deepconvnet', 'bfloat16', 'device'), ('unet_tiny', 'bfloat16', 'step'),
                     ('efficientnetv2_tiny_skin', 'bfloat16', 'step')}
  [dcn] = [goal for goal in goals if goal['figure'] == 'images_per_s']
  assert dcn['status'] == 'FAIL' and dcn['value'] > 0  # a CPU is no million-image GPU


@pytest.mark.parametrize('args,error', [
    (['--goals=bogus'], "error: --goals: 'bogus' is not one of"),
    (['extra'], "error: unexpected arguments: ['extra']")])
def test_a_mistake_is_one_line_and_runs_nothing(args, error, tmp_path):
  done = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'gpu_check.py'), '--tiny',
                         f'--output_dir={tmp_path}', *args], capture_output=True, text=True,
                        timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert done.returncode != 0
  assert done.stderr.strip().splitlines() == [done.stderr.strip()]
  assert done.stderr.startswith(error), done.stderr
  assert list(tmp_path.iterdir()) == []
