"""The audit finds what was planted, writes its report, and answers bad input in one line."""

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest
from PIL import Image

from skinjax.data import audit, builders, synthetic

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / 'launch' / 'audit.py'


@pytest.fixture(scope='module')
def layouts(tmp_path_factory):
  root = tmp_path_factory.mktemp('audit')
  ham = synthetic.write_ham10000(root / 'HAM10000', lesions_per_class={
      name: 3 for name in synthetic.HAM10000_CLASSES}, image_size=(48, 36), max_views=1,
      cross_lesion_copies=2)
  isic = synthetic.write_isic9(root / 'ISIC9', train_per_class=3, test_per_class=1,
                               image_size=(48, 48), copies_in_two_classes=2,
                               copies_across_splits=3, renamed_copies=1, near_copies=2,
                               ham10000=ham, ham10000_copies=5)
  return {'ham10000': ham, 'isic9': isic, 'root': root}


@pytest.fixture(scope='module')
def report(layouts):
  sets = [audit.from_layout('isic9', layouts['isic9']),
          audit.from_layout('ham10000', layouts['ham10000'])]
  return audit.write_report(audit.audit(sets), layouts['root'] / 'report', sheet_rows=4)


def test_the_planted_copies_are_counted(report):
  isic, ham = report['datasets']
  # 2 in two classes + 3 in two splits + 1 renamed, byte for byte; 2 altered copies.
  assert (isic['exact_groups'], isic['near_groups'], isic['groups']) == (6, 2, 8)
  assert isic['label_conflict_groups'] == 2
  # The 3 copies in Test/, and one of the 2 altered copies (planted Test, Train in turn).
  assert isic['split_leaks'] == {'Test / Train': 4}
  assert (ham['exact_groups'], ham['groups_crossing_source_groups']) == (2, 2)
  assert ham['label_conflict_groups'] == 0


def test_cross_dataset_copies_are_found_with_their_diagnoses(report):
  across = report['across'][0]
  # One of the 5 originals also has a cross-lesion copy in HAM10000, matched too.
  assert (across['isic9_images_found'], across['ham10000_images_found']) == (5, 6)
  assert (across['pairs_with_the_same_image_id'], across['pairs']) == (5, 6)
  # Filed under the ISIC9 folder of their HAM10000 diagnosis.
  for isic_label, met in across['diagnoses'].items():
    assert set(met) == {h for h, i in synthetic.ISIC9_FOLDER_OF_HAM10000.items()
                        if i == isic_label}


def test_the_report_files_are_written(layouts, report):
  folder = layouts['root'] / 'report'
  assert json.loads((folder / 'audit.json').read_text())['datasets'][0]['images'] == (
      report['datasets'][0]['images'])
  text = (folder / 'audit.md').read_text()
  assert '| actinic keratosis / basal cell carcinoma | 1 |' in text
  sheet = Image.open(folder / 'isic9_label_conflicts.png')
  assert sheet.width > 300 and sheet.height > 150


def run(*args):
  return subprocess.run([sys.executable, str(LAUNCHER), *args], capture_output=True,
                        text=True, timeout=300, cwd=REPO)


def one_line_error(result, pattern):
  """Exit status 2, and one error line, the last, with no traceback (log lines of TFDS
  may come before it)."""
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert [line for line in lines if line.startswith('error:')] == lines[-1:], lines
  assert pattern in lines[-1] and 'Traceback' not in result.stderr, result.stderr[-2000:]


def test_an_unbuilt_dataset_without_manual_dir_names_the_flag(tmp_path):
  one_line_error(run('--datasets=isic9', f'--data_dir={tmp_path}',
                     f'--output_dir={tmp_path / "out"}'),
                 'error: --manual_dir: dataset isic9/all9/2.0.0 is not built in')


def test_an_unknown_dataset_is_named(tmp_path):
  one_line_error(run('--datasets=isic10', f'--output_dir={tmp_path}'),
                 "error: --datasets: unknown dataset 'isic10'; known: ham10000, ph2, isic9")


def test_an_unknown_class_folder_is_refused(layouts, tmp_path):
  manual = synthetic.write_isic9(tmp_path / 'ISIC9', train_per_class=1, test_per_class=1,
                                 image_size=(32, 32))
  (manual / synthetic.ISIC9_ROOT / 'Train' / 'nevus').rename(
      manual / synthetic.ISIC9_ROOT / 'Train' / 'naevus')
  one_line_error(run('--datasets=isic9', f'--manual_dir={manual}',
                     f'--output_dir={tmp_path / "out"}'), 'naevus: unknown class folder')


def test_a_damaged_image_is_named_or_skipped_and_counted(tmp_path):
  manual = synthetic.write_isic9(tmp_path / 'ISIC9', train_per_class=2, test_per_class=1,
                                 image_size=(32, 32))
  victim = next((manual / synthetic.ISIC9_ROOT / 'Train' / 'nevus').iterdir())
  victim.write_bytes(victim.read_bytes()[:100])
  one_line_error(run('--datasets=isic9', f'--manual_dir={manual}',
                     f'--output_dir={tmp_path / "a"}'), f'{victim.name}: not a readable image')
  result = run('--datasets=isic9', f'--manual_dir={manual}', f'--output_dir={tmp_path / "b"}',
               '--skip_corrupt')
  assert result.returncode == 0, result.stderr[-2000:]
  found = json.loads((tmp_path / 'b' / 'audit.json').read_text())['datasets'][0]
  assert (found['images'], found['skipped']) == (26, 1)


def test_an_audit_of_a_built_dataset_rewrites_nothing_of_it(tmp_path):
  manual = synthetic.write_isic9(tmp_path / 'ISIC9', train_per_class=3, test_per_class=1,
                                 image_size=(32, 32), renamed_copies=2)
  builder = builders.prepare('isic9', data_dir=str(tmp_path / 'tfds'), manual_dir=str(manual))
  data_path = Path(builder.data_path)
  before = {p: p.stat().st_mtime_ns for p in data_path.iterdir()}
  result = run('--datasets=isic9/all9', f'--data_dir={tmp_path / "tfds"}',
               f'--output_dir={tmp_path / "out"}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert {p: p.stat().st_mtime_ns for p in data_path.iterdir()} == before
  found = json.loads((tmp_path / 'out' / 'audit.json').read_text())['datasets'][0]
  # The build already collapsed the renamed copies: 38 files, 36 examples, no copies.
  assert (found['images'], found['groups']) == (36, 0)
  assert found['origin'] == f'prepared {os.fspath(data_path)}'
