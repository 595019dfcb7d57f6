"""The throughput suite runs end to end at tiny sizes and writes its results (no timing
is asserted: speed is what the suite reports, not what tests check)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'benchmarks')
sys.path.insert(0, BENCHMARKS)

import report  # noqa: E402
import suite  # noqa: E402

QUICK = ['--windows=2', '--warmup=1', '--min_window_s=0.01']


def _run(script, *args, timeout=300):
  done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), *args],
                        capture_output=True, text=True, timeout=timeout)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


@pytest.fixture(scope='module')
def tiny_results(tmp_path_factory):
  out = tmp_path_factory.mktemp('results')
  done = _run('throughput.py', '--preset=tiny', f'--output_dir={out}', *QUICK)
  [md] = [p for p in os.listdir(out) if p.endswith('.md')]
  with open(out / md.replace('.md', '.json')) as f:
    results = json.load(f)
  return done.stdout, (out / md).read_text(), results['rows'], results['meta']


def test_skinjax_rows_cover_both_modes_wrappers_and_pipeline(tiny_results):
  _, _, rows, _ = tiny_results
  ours = [r for r in rows if r['framework'] == 'skinjax']
  assert {(r['mode'], r['parallel'], r['devices'], r['data'], r['dtype']) for r in ours} == {
      ('train', 'jit', 1, 'step', 'float32'), ('eval', 'jit', 1, 'step', 'float32'),
      ('train', 'pmap', 2, 'stream', 'bfloat16')}
  for r in ours:
    assert r['images_per_s'] > 0 and len(r['window_images_per_s']) == 2
    assert r['step_s'] == pytest.approx(r['batch_size'] / r['images_per_s'])
    assert r['flops_per_image'] > 0 and r['compile_s'] > 0
    assert r['platform'] == 'cpu' and r['depthwise'] == 'shifted' and r['mfu'] is None


def test_each_float32_row_has_its_keras_ratio(tiny_results):
  _, md, rows, _ = tiny_results
  keras = {r['mode']: r for r in rows if r['framework'] == 'keras'}
  assert set(keras) == {'train', 'eval'}
  for r in rows:
    if r['framework'] == 'skinjax' and r['dtype'] == 'float32':
      assert r['vs_keras'] == pytest.approx(r['images_per_s'] / keras[r['mode']]['images_per_s'])
      assert f'{r["vs_keras"]:.2f}x' in md
  assert '| vs Keras | vs timm |' in md


def test_depthwise_microbenchmark_times_every_implementation(tiny_results):
  _, md, rows, _ = tiny_results
  totals = {r['implementation']: r for r in rows
            if r['framework'] == 'depthwise' and r['shape'] == 'B3 total'}
  assert set(totals) == {'conv', 'shifted_autodiff', 'shifted'}
  layers = [r for r in rows if r['framework'] == 'depthwise' and r['shape'] != 'B3 total']
  assert all(r['max_abs_error'] < 1e-4 and r['max_grad_rel_error'] < 1e-5 for r in layers)
  assert '## Depthwise convolution, per implementation' in md


def test_results_name_the_device_and_the_command(tiny_results):
  stdout, md, _, meta = tiny_results
  assert meta['device'] == report.device_name([{'framework': 'skinjax', 'platform': 'cpu'}])
  assert md.startswith(f'# Throughput on {meta["device"]}')
  assert '--preset=tiny' in meta['command'] and 'load average' in meta['note']
  assert 'wrote ' in stdout


def test_timm_worker_times_or_says_why_not():
  done = _run('timm_step.py', '--model=efficientnetv2_tiny_skin', '--image_size=32',
              '--batch_size=2', '--modes=train', '--compile=false', *QUICK)
  [row] = [json.loads(line[4:]) for line in done.stdout.splitlines()
           if line.startswith('ROW ')]
  if importlib.util.find_spec('torch') and importlib.util.find_spec('timm'):
    assert row['images_per_s'] > 0 and row['timm_model'] == 'test_efficientnet'
  else:
    assert 'torch/timm not importable' in row['skipped']


@pytest.mark.parametrize('fields, flag', [
    ({'dtype': ['float16']}, '--dtypes'),
    ({'parallel': ['pjit']}, '--parallel'),
    ({'data': ['disk']}, '--data'),
    ({'batch_size': [6], 'devices': [4]}, '--batch_sizes'),
    ({'devices': [0]}, '--devices'),
    ({'modes': ['predict']}, '--modes'),
])
def test_bad_sweep_values_name_their_flag(fields, flag):
  with pytest.raises(ValueError, match=flag):
    suite.sweep(suite.preset('tiny'), **fields)


def test_unknown_model_and_preset_are_named():
  with pytest.raises(ValueError, match="--models: 'resnet50'"):
    suite.sweep(suite.preset('tiny'), models=['resnet50'])
  with pytest.raises(ValueError, match='--preset'):
    suite.preset('tpu')


def test_sweep_replaces_a_field_in_every_row_by_each_value():
  rows = suite.sweep(suite.preset('tiny'), batch_size=[16, 32], dtype=['float32'])
  assert len(rows) == 4
  assert {(r.batch_size, r.dtype) for r in rows} == {(16, 'float32'), (32, 'float32')}
  added = suite.sweep(suite.preset('tiny'), models=['unet'])
  assert [(r.model, r.image_size) for r in added] == [('unet', 224)]


def test_mfu_and_ratios_follow_from_the_rows():
  key = dict(model='m', image_size=8, batch_size=4, mode='train', data='step', devices=2)
  rows = [
      dict(key, framework='skinjax', dtype='bfloat16', images_per_s=1000.0,
           flops_per_image=1e12, device_kind='NVIDIA H100 80GB HBM3'),
      dict(key, framework='keras', dtype='bfloat16', images_per_s=250.0),
      dict(key, framework='timm', variant='eager', dtype='bfloat16', images_per_s=400.0),
      dict(key, framework='timm', variant='compile', dtype='bfloat16', images_per_s=500.0),
  ]
  report.add_derived(rows)
  ours = rows[0]
  assert ours['tflops'] == pytest.approx(1000.0)
  assert ours['mfu'] == pytest.approx(1000.0 / (2 * 989.0))
  assert ours['vs_keras'] == pytest.approx(4.0)
  assert (ours['vs_timm'], ours['vs_timm_variant']) == (pytest.approx(2.0), 'compile')
