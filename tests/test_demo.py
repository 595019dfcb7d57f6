"""The README's main job builds the synthetic datasets, trains both models from them and
leaves a checkpoint per model."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_trains_both_models_and_writes_checkpoints(tmp_path):
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'launch', 'demo.py'), f'--workdir={tmp_path}',
       '--classifier_steps=3', '--segmenter_steps=2', '--batch_size=4',
       '--segmenter=unet_tiny', '--segmentation_size=32'],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'DeepConvNet on ham10000/images/1.0.0: train loss' in result.stdout
  assert 'U-Net on ph2/1.0.0: train Jaccard loss' in result.stdout
  # The synthetic layouts were written and built by the real builders.
  assert (tmp_path / 'synthetic' / 'HAM10000' / 'HAM10000_metadata.csv').exists()
  assert (tmp_path / 'tfds' / 'ph2' / '1.0.0' / 'dataset_info.json').exists()
  assert os.listdir(tmp_path / 'deepconvnet' / 'checkpoints') == ['3']
  assert os.listdir(tmp_path / 'unet' / 'checkpoints') == ['2']
