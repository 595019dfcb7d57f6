"""A TFDS data directory prepared by the stock `tfds build` (tfrecord files) is read as it
is by the library and the launchers; an empty --manual_dir is named in one line."""

import subprocess
import sys
from pathlib import Path

import pytest

from skinjax.data import builders, experiment_data, synthetic
from skinjax.data.image_files import DatasetFileError
from training_runs import classifier_spec

REPO = Path(__file__).resolve().parents[1]


def test_a_dataset_built_by_the_stock_command_is_read_in_its_own_format(tmp_path):
  manual = synthetic.write_ham10000(tmp_path / 'HAM10000', lesions_per_class={
      name: 3 for name in synthetic.HAM10000_CLASSES}, image_size=(40, 30), max_views=1)
  tfds_cli = Path(sys.executable).with_name('tfds')
  result = subprocess.run([str(tfds_cli), 'build', str(REPO / 'datasets' / 'ham10000'),
                           f'--manual_dir={manual}', f'--data_dir={tmp_path / "tfds"}',
                           '--config=images'], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  assert list((tmp_path / 'tfds').glob('ham10000/images/*/*.tfrecord*'))
  builder = builders.prepare('ham10000', data_dir=str(tmp_path / 'tfds'), config='images')
  assert builder.info.file_format.value == 'tfrecord'
  data = experiment_data.prepare(classifier_spec(), data_dir=str(tmp_path / 'tfds'))
  assert len(data.train) + len(data.validation) + len(data.test) == 21


def test_an_empty_manual_dir_is_named(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(DatasetFileError, match=r'^--manual_dir=\S+empty: empty or missing; '
                                             r'expected the ph2 download'):
    builders.prepare('ph2', data_dir=str(tmp_path / 'tfds'), manual_dir=str(tmp_path / 'empty'))
