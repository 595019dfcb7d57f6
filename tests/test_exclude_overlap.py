"""--config.exclude_overlap_with: a run pretrained on HAM10000 leaves out the images that
ISIC9 validates and tests on (found by pixels), records them, and says so in one line when
it cannot."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skinjax.data import builders, synthetic
from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.train import trainer
from skinjax.train.spec import ConfigError
from training_runs import classifier_spec

REPO = Path(__file__).resolve().parents[1]


def _ids(builder, split):
  source = builder.as_data_source(split)
  return [source[i]['image_id'].decode() for i in range(len(source))]


SPEC = classifier_spec(epochs=1, balance='none', augment='none', exclude_overlap_with='isic9')


@pytest.fixture(scope='module')
def excluding_run(ham_in_isic9, tmp_path_factory):
  """A HAM10000 run that left out ISIC9's validation and test images: (workdir, data_dir)."""
  root = tmp_path_factory.mktemp('excluding')
  data_dir = str(root / 'tfds')
  trainer.train(SPEC, str(root / 'run'), data_dir=data_dir,
                manual_dir=ham_in_isic9['ham10000'], overlap_manual_dir=ham_in_isic9['isic9'],
                show_progress=False)
  return root / 'run', data_dir


def test_the_images_isic9_scores_on_are_left_out_and_recorded(ham_in_isic9, excluding_run):
  workdir, data_dir = excluding_run
  ham = builders.prepare('ham10000', data_dir=data_dir, config='images')
  isic = builders.prepare('isic9', data_dir=data_dir)
  # Expected from the planted list and the two builds' image ids alone: a planted copy
  # keeps its HAM10000 image id as its file name.
  scored = set(_ids(isic, 'validation')) | set(_ids(isic, 'test'))
  ham_train = _ids(ham, 'train')
  planted = {row['original'].split('/')[1] for row in ham_in_isic9['planted']}
  expected = planted & scored & set(ham_train)
  assert expected  # the fixture plants some in ISIC9's scored splits

  record = json.loads((workdir / 'left_out.json').read_text())
  assert record['dataset'].startswith('isic9/')
  assert record['splits'] == ['validation', 'test']
  assert {pair['target_id'] for pair in record['pairs']} == expected
  assert record['count'] == len(expected)
  assert sum(record['by_class'].values()) == len(expected)
  labels = dict(zip(ham_train, [ham.as_data_source('train')[i]['label']
                                for i in range(len(ham_train))]))
  names = ham.info.features['label'].names
  for name in names:
    assert record['by_class'][name] == sum(labels[i] == names.index(name) for i in expected)
    assert record['train_after'][name] == record['train_before'][name] - record['by_class'][name]
  assert sum(record['train_before'].values()) == len(ham_train)

  description = json.loads((workdir / 'config.json').read_text())
  assert description['config']['exclude_overlap_with'] == 'isic9'
  assert description['left_out']['count'] == len(expected)
  assert description['left_out']['by_class'] == record['by_class']
  # One epoch over what is left: the steps the checkpoint reached show the smaller split.
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()
                 if p.name.isdigit())
  assert steps[-1] == (len(ham_train) - len(expected)) // SPEC.batch_size


def test_an_evaluation_on_isic9_scores_the_images_the_run_left_out(ham_in_isic9, excluding_run):
  workdir, data_dir = excluding_run
  result = evaluate_workdir(str(workdir), dataset='isic9', split='test', data_dir=data_dir)
  ham = builders.prepare('ham10000', data_dir=data_dir, config='images')
  isic = builders.prepare('isic9', data_dir=data_dir)
  planted = {row['original'].split('/')[1] for row in ham_in_isic9['planted']}
  test_copies = planted & set(_ids(isic, 'test'))
  # Seen: trained on, less what was left out, or chose the checkpoint (validation).
  assert test_copies & set(_ids(ham, 'train'))  # the fixture plants some there
  assert set(result.target.excluded['image_ids']) == test_copies & set(_ids(ham, 'validation'))
  assert result.target.excluded['count'] == len(result.target.excluded['image_ids'])
  assert 'less the' in result.target.excluded['rule']


def test_a_resume_that_drops_the_exclusion_is_refused_naming_the_field(ham_in_isic9,
                                                                     excluding_run, tmp_path):
  workdir, data_dir = excluding_run
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  before = (copy / 'config.json').read_bytes()
  with pytest.raises(ConfigError, match=r"--config\.exclude_overlap_with 'isic9' -> ''"):
    trainer.train(SPEC.replace(exclude_overlap_with='', phases=(SPEC.phases[0].replace(
        epochs=2),)), str(copy), data_dir=data_dir, manual_dir=ham_in_isic9['ham10000'],
        show_progress=False)
  assert (copy / 'config.json').read_bytes() == before


def test_a_resume_on_another_build_of_the_other_dataset_is_refused(ham_in_isic9,
                                                                 excluding_run, tmp_path):
  """The same settings, a data dir whose ISIC9 was built from a layout with fewer of the
  HAM10000 images: the run would leave out other images."""
  workdir, _ = excluding_run
  shutil.copytree(workdir, tmp_path / 'run')
  before = (tmp_path / 'run' / 'config.json').read_bytes()
  fewer = synthetic.write_isic9(tmp_path / 'ISIC9', train_per_class=4, test_per_class=1,
                                image_size=(64, 64), ham10000=ham_in_isic9['ham10000'],
                                ham10000_copies=2)
  with pytest.raises(ConfigError, match=r'its run left out \d+ \(of isic9/all9/2\.0\.0\) '
                                        r'train images, this one would leave out'):
    trainer.train(SPEC.replace(phases=(SPEC.phases[0].replace(epochs=2),)),
                  str(tmp_path / 'run'), data_dir=str(tmp_path / 'tfds'),
                  manual_dir=ham_in_isic9['ham10000'], overlap_manual_dir=str(fewer),
                  show_progress=False)
  assert (tmp_path / 'run' / 'config.json').read_bytes() == before


def test_a_run_without_the_other_dataset_names_the_flag_to_give(ham_in_isic9, tmp_path):
  spec = classifier_spec(epochs=1, exclude_overlap_with='isic9')
  with pytest.raises(FileNotFoundError, match=r'^--config\.exclude_overlap_with=isic9: isic9 '
                                              r'is not built in .*; give --overlap_manual_dir'):
    trainer.train(spec, str(tmp_path / 'run'), data_dir=str(tmp_path / 'tfds'),
                  manual_dir=ham_in_isic9['ham10000'], show_progress=False)


@pytest.mark.parametrize('value, message', [
    ('ham10000', "the run's own dataset"),
    ('isic', 'unknown dataset'),
    ('isic9/all10', "isic9 has no config 'all10'"),
])
def test_an_exclusion_that_cannot_work_is_refused(value, message):
  with pytest.raises(ConfigError, match=f"^--config.exclude_overlap_with='{value}': {message}"):
    classifier_spec(exclude_overlap_with=value)


def test_the_paper_protocol_cannot_leave_out_images():
  with pytest.raises(ConfigError, match='use --config.split_protocol=lesion'):
    classifier_spec(exclude_overlap_with='isic9', split_protocol='paper')


def test_the_launcher_refuses_an_overlap_download_without_an_exclusion(ham_in_isic9, tmp_path):
  result = subprocess.run(
      [sys.executable, str(REPO / 'launch' / 'train.py'),
       f'--config={REPO / "launch" / "configs" / "deepconvnet_ham10000.py"}',
       f'--workdir={tmp_path / "run"}', f'--overlap_manual_dir={ham_in_isic9["isic9"]}'],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      'error: --overlap_manual_dir: only used with --config.exclude_overlap_with=<dataset>')
  assert not (tmp_path / 'run').exists()
