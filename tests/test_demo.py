"""The README's main job builds the synthetic datasets with the real builders, trains both
models from them, evaluates them and ends by saying what it trained, what it scored and
where the reports are."""

import json
import os
import subprocess
import sys

import launcher_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_builds_trains_evaluates_and_ends_with_its_summary(tmp_path):
  # One CPU device, as `make demo` runs on a machine without an accelerator.
  env = launcher_env.with_devices(1)
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'launch', 'demo.py'), f'--workdir={tmp_path}',
       '--classifier_epochs=1', '--segmenter_epochs=1', '--segmenter_batch_size=4',
       '--segmenter=unet_tiny', '--segmentation_size=32'],
      capture_output=True, text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / 'synthetic' / 'HAM10000' / 'HAM10000_metadata.csv').exists()
  assert (tmp_path / 'tfds' / 'ph2' / '1.0.0' / 'dataset_info.json').exists()
  for name in ('deepconvnet', 'unet'):
    assert os.listdir(tmp_path / name / 'checkpoints')

  # The last lines: a headline, three per model, where the reports are.
  headline, *per_model, where = result.stdout.strip().splitlines()[-8:]
  assert headline.startswith('demo done in ')
  assert f'on the synthetic layouts in {tmp_path}/synthetic/' in headline
  assert where.startswith(f'reports under {tmp_path}/*/report/test/')
  expected = {
      'deepconvnet': ('deepconvnet on ham10000 at 28x28', 'accuracy',
                      'changed: batch_size 16 (paper 64), epochs 1 (paper 20)'),
      'unet': ('unet_tiny on ph2 at 32x32', 'dice',
               'changed: model unet_tiny (paper unet), bn_momentum 0.9 (paper 0.99), '
               'image_size 32 (paper 224), batch_size 4 (paper 16), epochs 1 (paper 100)'),
  }
  for (name, (trained, metric, changed)), (what, scores, report_line) in zip(
      expected.items(), zip(per_model[0::3], per_model[1::3], per_model[2::3])):
    assert what.startswith(f'{name}: {trained}, paper 1\'s ') and what.endswith(changed)
    report_dir = tmp_path / name / 'report' / 'test'
    report = json.loads((report_dir / 'report.json').read_text())
    # The scores printed are the test report's, to the digits shown.
    assert scores.startswith(f'  test {metric} {report["metrics"][metric]:.3f}, ')
    assert scores.endswith(f'({report["examples"]} images)')
    assert report_line.startswith(f'  report: {report_dir}/ (report.json, ')
    for figure in report['figures'].values():
      assert os.path.basename(figure) in report_line and os.path.exists(figure)
  assert 'balance paper1, augment paper1_classification' in per_model[0]
