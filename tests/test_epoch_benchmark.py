"""The throughput suite's epoch row: the skinjax side trains through launch/train.py on a
synthetic HAM10000 and emits what the report needs; the Keras side says why where Keras
is missing; the report renders the section, its ratios and its skipped lines (no timing is
asserted)."""

import json
import os
import subprocess
import sys

import pytest

from launcher_env import with_devices

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'benchmarks')
sys.path.insert(0, BENCHMARKS)

import report  # noqa: E402
from hidden_imports import hiding_folder  # noqa: E402
import throughput  # noqa: E402



def _rows(script, *args, env=None):
  done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), *args],
                        capture_output=True, text=True, timeout=300, env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  return [json.loads(line[4:]) for line in done.stdout.splitlines() if line.startswith('ROW ')]


def test_the_skinjax_side_times_each_epoch_of_the_launchers_run(layouts):
  [row] = _rows('epoch_skinjax.py', f'--manual_dir={layouts["ham10000"]}',
                f'--data_dir={layouts["data_dir"]}', '--epochs=2', env=with_devices(1))
  assert (row['bench'], row['framework'], row['model'], row['image_size'],
          row['batch_size'], row['balance'], row['platform']) == (
              'epoch', 'skinjax', 'deepconvnet', 28, 64, 'paper1', 'cpu')
  # Whole batches of the balanced train split, every epoch.
  images = row['train_examples'] // 64 * 64
  assert images > 0 and row['validation_examples'] > 0
  assert [e['epoch'] for e in row['per_epoch']] == [1, 2]
  for e in row['per_epoch']:
    assert e['images'] == images and e['train_s'] > 0 and e['validation_s'] > 0
    assert e['images_per_s'] == pytest.approx(images / e['train_s'])
  assert 'launch/train.py' in row['command'] and row['prepare_s'] >= 0
  assert '| skinjax (launch/train.py) |' in '\n'.join(report.epoch_section([row]))


def test_the_keras_side_says_why_where_keras_is_missing(tmp_path):
  hide = hiding_folder(tmp_path / 'hide_keras', ['keras'], 'tests/test_epoch_benchmark.py')
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [hide] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
  [row] = _rows('epoch_keras.py', f'--manual_dir={tmp_path}', f'--data_dir={tmp_path}',
                env=env)
  assert (row['bench'], row['framework']) == ('epoch', 'keras')
  assert row['skipped'].startswith('keras/tensorflow not importable: ImportError: keras')


def _side(framework, rates, seconds, **fields):
  per_epoch = [{'epoch': k + 1, 'train_s': s, 'validation_s': 0.5, 'images': 6400,
                'images_per_s': r} for k, (r, s) in enumerate(zip(rates, seconds))]
  return dict(bench='epoch', framework=framework, model='deepconvnet', image_size=28,
              batch_size=64, eval_batch_size=256, learning_rate=1e-3, balance='paper1',
              split_protocol='lesion',
              dataset='ham10000/images/2.0.0', train_examples=6430, validation_examples=100,
              per_epoch=per_epoch, **fields)


def test_the_report_sets_both_sides_and_their_ratios_side_by_side():
  rows = [_side('skinjax', [1000.0, 4000.0], [6.4, 1.6], augment='skinjax.augment'),
          _side('keras', [1500.0, 2000.0], [4.3, 3.2], augment='ImageDataGenerator.flow',
                augment_kind='image_data_generator', variant='tf')]
  text = '\n'.join(report.epoch_section(rows))
  assert '6,430 training examples an epoch after balancing' in text
  assert ('| skinjax (launch/train.py) | skinjax.augment | 6,400 | 6.4 | 0.5 | 1,000 | 1.6 | '
          '0.5 | 4,000 | 9.0 |') in text
  assert '| Keras/TF (tf) | ImageDataGenerator.flow | 6,400 | 4.3 |' in text
  # epoch 2: 4000 / 2000 images/s; wall: (6.4 + 1.6 + 1.0) / (4.3 + 3.2 + 1.0) s.
  assert ('skinjax / Keras (image_data_generator): epoch-2 images/s 2.00x, wall time of '
          'the 2 epochs 1.06x') in text
  markdown = report.markdown(rows, {'device': 'cpu', 'command': 'c', 'date': 'd',
                                    'note': 'n', 'versions': {}})
  assert '## One epoch of paper 1\'s DeepConvNet on HAM10000' in markdown
  report.add_derived(rows)  # epoch rows have no step rate to compare
  assert 'vs_keras' not in rows[0]


def test_without_the_download_the_row_is_one_skipped_line(tmp_path):
  rows = throughput.epoch_rows(str(tmp_path / 'HAM10000'))
  assert [(r['bench'], r['framework']) for r in rows] == [('epoch', 'skinjax')]
  text = report.markdown(rows, {'device': 'cpu', 'command': 'c', 'date': 'd', 'note': 'n',
                                'versions': {}})
  assert (f'- skinjax: skipped (no HAM10000 download at {tmp_path / "HAM10000"} '
          '(--ham10000_dir))') in text
  assert 'Not measured:' not in text.split('## One epoch')[0]  # not among the step rows


def test_a_download_missing_an_image_is_one_skipped_row_and_leaves_no_partial_part(tmp_path):
  download = tmp_path / 'HAM10000'
  for part in ('HAM10000_images_part_1', 'HAM10000_images_part_2'):
    (download / part).mkdir(parents=True)
  (download / 'HAM10000_metadata.csv').write_text(
      'lesion_id,image_id,dx,dx_type,age,sex,localization\n'
      'HAM_0000001,ISIC_0000001,nv,histo,40.0,male,back\n')
  cache = tmp_path / 'cache'
  rows = throughput.epoch_rows(str(download), max_images=1, cache_dir=str(cache))
  assert len(rows) == 1 and rows[0]['bench'] == 'epoch'
  assert 'lists ISIC_0000001, but no ISIC_0000001.jpg' in rows[0]['skipped']
  assert str(download) in rows[0]['skipped']
  assert not [path for path in cache.rglob('*') if 'partial' in path.name]
