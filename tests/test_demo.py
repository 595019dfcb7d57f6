"""The README's main job builds the synthetic datasets with the real builders, trains both
models from them, evaluates them and says where the reports are."""

import json
import os
import subprocess
import sys

import launcher_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_builds_trains_evaluates_and_reports(tmp_path):
  # One CPU device, as `make demo` runs on a machine without an accelerator.
  env = launcher_env.with_devices(1)
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'launch', 'demo.py'), f'--workdir={tmp_path}',
       '--classifier_epochs=1', '--segmenter_epochs=1', '--batch_size=4',
       '--segmenter=unet_tiny', '--segmentation_size=32'],
      capture_output=True, text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / 'synthetic' / 'HAM10000' / 'HAM10000_metadata.csv').exists()
  assert (tmp_path / 'tfds' / 'ph2' / '1.0.0' / 'dataset_info.json').exists()
  for name, metric in (('deepconvnet', 'accuracy'), ('unet', 'dice')):
    report = json.loads((tmp_path / name / 'report' / 'test' / 'report.json').read_text())
    assert 0.0 <= report['metrics'][metric] <= 1.0
    assert os.listdir(tmp_path / name / 'checkpoints')
  assert f'reports under {tmp_path}/*/report/test/' in result.stdout
