"""The builders on layouts with planted copies: copies collapse (ISIC9), conflicting groups
are left out and listed, and no duplicate group (nor, for HAM10000, lesion) spans two
splits, in any builder; on the real ISIC9 too, built by the stock `tfds build` command."""

import collections
import itertools
import json
import os
from pathlib import Path
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from skinjax.data import builders, overlap, split_fingerprints, synthetic

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('SKINJAX_SHARED_DATA', REPO.parent / 'shared' / 'data'))
FAULTS = dict(copies_in_two_classes=2, copies_across_splits=2, renamed_copies=1, near_copies=2)

tfds.disable_progress_bar()


@pytest.fixture(scope='module')
def layouts(tmp_path_factory):
  root = tmp_path_factory.mktemp('planted')
  ham = synthetic.write_ham10000(root / 'HAM10000', lesions_per_class={
      name: 6 for name in synthetic.HAM10000_CLASSES}, image_size=(48, 36), max_views=2,
      cross_lesion_copies=4)
  isic = synthetic.write_isic9(root / 'ISIC9', train_per_class=8, test_per_class=2,
                               image_size=(48, 48), **FAULTS, ham10000=ham, ham10000_copies=6)
  return {'ham10000': ham, 'isic9': isic, 'data_dir': str(root / 'tfds')}


def build(layouts, name, config=None):
  return builders.prepare(name, data_dir=layouts['data_dir'], manual_dir=str(layouts[name]),
                          config=config)


def examples(builder):
  return {split: list(split_fingerprints.stored_examples(builder, split))
          for split in builder.info.splits}


def planted(layouts, name):
  return json.loads((layouts[name] / synthetic.PLANTED).read_text())


def no_pair_across_splits(builder):
  """Every pair of splits shares no exact or near-duplicate image."""
  for first, second in itertools.combinations(sorted(builder.info.splits), 2):
    found = overlap.overlap(builder, first, builder, second)
    assert found.count == 0, (first, second, found.pairs()[:3])


def test_isic9_leaves_out_each_group_filed_under_two_diagnoses_and_lists_it(layouts):
  builder = build(layouts, 'isic9')
  conflicts = builder.info.metadata['conflicts']
  expected = [sorted([row['original'], row['copy']]) for row in planted(layouts, 'isic9')
              if row['kind'] == 'two_classes']
  assert builder.info.metadata['conflict_count'] == len(expected) == 2
  assert sorted(sorted(c['paths']) for c in conflicts) == sorted(expected)
  assert all(len(c['diagnoses']) == 2 for c in conflicts)
  kept = {p for split in examples(builder).values() for e in split for p in e['source_paths']}
  assert not kept & {p.encode() for pair in expected for p in pair}


def test_isic9_copies_are_one_example_with_every_source_path(layouts):
  builder = build(layouts, 'isic9')
  paths = {tuple(sorted(p.decode() for p in e['source_paths']))
           for split in examples(builder).values() for e in split}
  for row in planted(layouts, 'isic9'):
    if row['kind'] in ('two_splits', 'renamed'):
      assert tuple(sorted([row['original'], row['copy']])) in paths, row
  # 90 drawn + 7 planted files; the 2 conflicting pairs go, the 3 byte copies merge.
  assert builder.info.splits.total_num_examples == 90 - 2 + 2 + 6


def test_isic9_near_copies_share_the_split_of_their_original(layouts):
  builder = build(layouts, 'isic9')
  split_of = {p.decode(): split for split, rows in examples(builder).items()
              for e in rows for p in e['source_paths']}
  near = [row for row in planted(layouts, 'isic9') if row['kind'] == 'near']
  assert len(near) == 2
  for row in near:
    assert split_of[row['copy']] == split_of[row['original']], row


def test_the_paper_config_keeps_every_file_and_says_it_leaks(layouts):
  builder = build(layouts, 'isic9', 'all9_paper')
  assert builder.info.splits.total_num_examples == 90 + 7 + 6
  assert 'LEAKS' in builder.builder_config.description
  assert builder.info.metadata['conflict_count'] == 0


@pytest.mark.parametrize('name,config', [
    ('isic9', 'all9'), ('isic9', 'benign_malignant'), ('isic9', 'benign6'),
    ('isic9', 'malignant3'), ('ham10000', 'images'), ('ph2', None)])
def test_no_duplicate_group_spans_two_splits(layouts, tmp_path, name, config):
  if name == 'ph2':
    manual = synthetic.write_ph2(tmp_path / 'PH2', cases_per_class={
        n: 6 for n in synthetic.PH2_CLASSES}, image_size=(64, 48))
    case = manual / 'PH2 Dataset images' / 'IMD001'
    copy = manual / 'PH2 Dataset images' / 'IMD099'
    for part, suffix in (('Dermoscopic_Image', ''), ('lesion', '_lesion')):
      (copy / f'IMD099_{part}').mkdir(parents=True)
      (copy / f'IMD099_{part}' / f'IMD099{suffix}.bmp').write_bytes(
          (case / f'IMD001_{part}' / f'IMD001{suffix}.bmp').read_bytes())
    import openpyxl
    workbook = openpyxl.load_workbook(manual / 'PH2_dataset.xlsx')
    sheet = workbook.active
    row = next(r for r in sheet.iter_rows(values_only=True) if r[0] == 'IMD001')
    sheet.append(['IMD099', *row[1:]])
    workbook.save(manual / 'PH2_dataset.xlsx')
    builder = builders.prepare('ph2', data_dir=str(tmp_path / 'tfds'), manual_dir=str(manual))
    ids = {split: {e['image_id'] for e in rows} for split, rows in examples(builder).items()}
    assert [split for split, found in ids.items() if b'IMD099' in found] == [
        split for split, found in ids.items() if b'IMD001' in found]
  else:
    builder = build(layouts, name, config)
  no_pair_across_splits(builder)


def test_ham10000_copies_under_two_lesions_share_a_split(layouts):
  builder = build(layouts, 'ham10000', 'images')
  rows = examples(builder)
  split_of = {e['image_id'].decode(): split for split, found in rows.items() for e in found}
  lesions = {split: {e['lesion_id'] for e in found} for split, found in rows.items()}
  for row in planted(layouts, 'ham10000'):
    assert split_of[row['copy']] == split_of[row['original']], row
  for first, second in itertools.combinations(lesions, 2):
    assert not lesions[first] & lesions[second]


needs_isic9 = pytest.mark.skipif(not (SHARED_DATA / 'ISIC9').is_dir(),
                                 reason=f'the real ISIC9 set is not at {SHARED_DATA}')


def check_real_isic9(builder):
  """155 groups are filed under two diagnoses (77 actinic keratosis / nevus, 78 melanoma /
  seborrheic keratosis); 2,359 files hold 2,200 distinct pixel arrays."""
  metadata = builder.info.metadata
  assert metadata['conflict_count'] == 155
  assert collections.Counter(' / '.join(c['diagnoses']) for c in metadata['conflicts']) == {
      'actinic keratosis / nevus': 77, 'melanoma / seborrheic keratosis': 78}
  # One conflicting pair also has a near-duplicate under a third name (ISIC_0000521),
  # which leaves with it: 311 files, 156 distinct images.
  assert sum(len(c['paths']) for c in metadata['conflicts']) == 311
  rows = examples(builder)
  assert sum(len(r) for r in rows.values()) == 2200 - 156
  # The 4 copies that stay are paths of an example, not examples.
  assert sum(len(e['source_paths']) for r in rows.values() for e in r) == 2359 - 311
  no_pair_across_splits(builder)


@needs_isic9
def test_the_real_isic9_builds_as_published(tmp_path):
  check_real_isic9(builders.prepare('isic9', data_dir=str(tmp_path),
                                    manual_dir=str(SHARED_DATA / 'ISIC9')))


@pytest.mark.slow  # a minute on 2 cores: the tfds command's start-up and tfrecord writing
@needs_isic9
def test_the_stock_command_builds_the_real_isic9_as_published(tmp_path):
  """One config; the command without --config builds all eight the same way."""
  result = subprocess.run(
      [str(Path(sys.executable).parent / 'tfds'), 'build', str(REPO / 'datasets' / 'isic9'),
       f'--manual_dir={SHARED_DATA / "ISIC9"}', f'--data_dir={tmp_path}', '--config=all9'],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  check_real_isic9(tfds.builder_from_directory(str(tmp_path / 'isic9' / 'all9' / '2.0.0')))


@pytest.mark.slow  # two minutes on 2 cores: 10,015 images built, then fingerprinted
@pytest.mark.skipif(not (SHARED_DATA / 'HAM10000').is_dir(),
                    reason=f'the real HAM10000 set is not at {SHARED_DATA}')
@pytest.mark.parametrize('name,manual', [('ham10000', 'HAM10000'), ('ph2', 'PH2-sample')])
def test_no_duplicate_group_spans_two_splits_in_the_real_builds(tmp_path, name, manual):
  builder = builders.prepare(name, data_dir=str(tmp_path), manual_dir=str(SHARED_DATA / manual))
  no_pair_across_splits(builder)
