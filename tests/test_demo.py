"""The README's main job runs end to end and leaves a checkpoint per model."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_trains_both_models_and_writes_checkpoints(tmp_path):
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'launch', 'demo.py'), f'--workdir={tmp_path}',
       '--steps=2', '--batch_size=4', '--segmenter=unet_tiny', '--segmentation_size=32'],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'DeepConvNet: train loss' in result.stdout and 'U-Net: train Jaccard loss' in result.stdout
  for name in ('deepconvnet', 'unet'):
    steps = os.listdir(tmp_path / name / 'checkpoints')
    assert steps == ['2'], steps
