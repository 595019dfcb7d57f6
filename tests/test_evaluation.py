"""Evaluation from a workdir: one pass of the model per example, and scoring on another
dataset of the same task (a segmenter trained on HAM10000 masks on every PH2 case; a
HAM10000 classifier on the ISIC set through the declared class map, leaving out the
images it saw), or a one-line refusal naming both."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from skinjax.data import builders, class_maps, experiment_data, synthetic
from skinjax.evaluation import evaluate as evaluate_lib
from skinjax.models.deepconvnet import DeepConvNet
from skinjax.train import build
from skinjax.train.spec import ConfigError
from training_runs import classifier_spec, segmenter_spec, train

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('SKINJAX_SHARED_DATA', REPO.parent / 'shared' / 'data'))
HAM_COPIES = 14  # HAM10000 images filed in the synthetic ISIC set, 2 per class


@pytest.fixture(scope='module')
def ham_segmenter_run(layouts, tmp_path_factory):
  """The tiny U-Net trained on the synthetic HAM10000's lesion masks."""
  workdir = tmp_path_factory.mktemp('ham_segmenter')
  spec = segmenter_spec(epochs=1, dataset='ham10000', dataset_config='with_masks')
  return workdir, train(spec, workdir, layouts)


@pytest.fixture(scope='module')
def isic_with_ham_images(layouts, tmp_path_factory):
  """A synthetic ISIC set holding HAM10000 images (squashed to its square, re-encoded) as
  the real one does: (manual dir, planted HAM10000 image ids)."""
  root = tmp_path_factory.mktemp('isic_with_ham')
  synthetic.write_isic9(root, train_per_class=2, test_per_class=1, image_size=(48, 48),
                        ham10000=layouts['ham10000'], ham10000_copies=HAM_COPIES)
  planted = json.loads((root / synthetic.PLANTED).read_text())
  return str(root), [row['original'].split('/')[1] for row in planted]


def launcher(*args):
  return subprocess.run([sys.executable, str(REPO / 'launch' / 'evaluate.py'), *map(str, args)],
                        capture_output=True, text=True, timeout=600)


def test_a_segmenter_trained_on_ham10000_masks_is_scored_on_every_ph2_case(
    ham_segmenter_run, layouts, tmp_path):
  workdir, _ = ham_segmenter_run
  result = launcher(f'--workdir={workdir}', '--dataset=ph2', f'--manual_dir={layouts["ph2"]}',
                    '--split=all', f'--data_dir={tmp_path / "tfds"}')
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((workdir / 'report' / 'ph2-all' / 'report.json').read_text())
  assert report['examples'] == 3 * 6  # every case of the synthetic PH2
  assert report['dataset'].startswith('ph2/') and report['trained_on'].startswith('ham10000/')
  assert report['metrics']['images'] == 18 and 0.0 <= report['metrics']['dice'] <= 1.0
  assert report['excluded']['count'] == 0
  assert Path(report['figures']['segmentation_overlays']).stat().st_size > 10_000
  assert 'ph2-all metrics (18 examples)' in result.stdout


def test_a_ham10000_classifier_is_scored_on_the_isic_set_without_the_images_it_saw(
    classifier_run, layouts, isic_with_ham_images, tmp_path):
  workdir, _ = classifier_run
  manual_dir, planted = isic_with_ham_images
  evaluation = evaluate_lib.evaluate_workdir(str(workdir), dataset='isic9', split='all',
                                             data_dir=str(tmp_path / 'tfds'),
                                             manual_dir=manual_dir)
  spec = classifier_spec()
  data = experiment_data.prepare(spec, data_dir=layouts['data_dir'], manual_dir=None)
  seen = set(data.train.image_ids) | set(data.validation.image_ids)
  expected_out = sorted(set(planted) & seen)
  assert 0 < len(expected_out) < HAM_COPIES  # some planted images are HAM10000 test images
  report = json.loads((Path(evaluation.report_dir) / 'report.json').read_text())
  assert report['excluded']['image_ids'] == expected_out
  assert report['excluded']['count'] == len(expected_out)
  total = 9 * 3 + HAM_COPIES
  assert report['examples'] == report['metrics']['count'] == total - len(expected_out)
  assert report['class_map'] == class_maps.ISIC9_TO_HAM10000
  assert report['class_names'] == list(synthetic.HAM10000_CLASSES)
  # The HAM10000 test images in the ISIC set keep their diagnosis through the map.
  ham_labels = dict(zip(data.test.image_ids, data.test.labels))
  arrays = evaluation.target.arrays
  shared = [i for i, name in enumerate(arrays.image_ids) if name in ham_labels]
  assert shared and all(arrays.labels[i] == ham_labels[arrays.image_ids[i]] for i in shared)


def test_a_dataset_that_does_not_fit_the_run_is_refused_naming_both(
    classifier_run, ham_segmenter_run, isic_with_ham_images, tmp_path):
  manual_dir, _ = isic_with_ham_images
  with pytest.raises(ConfigError, match=r'^--dataset=isic9: the run in .* is a segmenter, and '
                                        r'isic9 .*has no lesion masks'):
    evaluate_lib.evaluate_workdir(str(ham_segmenter_run[0]), dataset='isic9', split='all',
                                  data_dir=str(tmp_path / 'tfds'), manual_dir=manual_dir)
  result = launcher(f'--workdir={classifier_run[0]}', '--dataset=isic9',
                    '--dataset_config=benign_malignant', f'--manual_dir={manual_dir}',
                    f'--data_dir={tmp_path / "tfds"}')
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and errors[0].startswith(
      'error: --dataset=isic9: its classes (benign, malignant) do not map onto the classes '
      'of the run in'), result.stderr[-2000:]
  assert 'akiec, bcc, bkl, df, mel, nv, vasc' in errors[0]


@pytest.mark.skipif(not SHARED.is_dir(), reason=f'no real data at {SHARED}')
def test_runs_are_scored_on_the_real_ph2_and_isic_samples(classifier_run, ham_segmenter_run,
                                                          tmp_path):
  data_dir = str(tmp_path / 'tfds')
  segmenter = evaluate_lib.evaluate_workdir(
      str(ham_segmenter_run[0]), dataset='ph2', split='all', data_dir=data_dir,
      manual_dir=str(SHARED / 'PH2-sample'))
  assert len(segmenter.target.arrays) == 12  # the sample's 12 cases
  classifier = evaluate_lib.evaluate_workdir(
      str(classifier_run[0]), dataset='isic9', split='all', data_dir=data_dir,
      manual_dir=str(SHARED / 'ISIC9-sample'))
  assert classifier.metrics['count'] == 36  # 4 per class; none is a synthetic image
  assert classifier.target.excluded['count'] == 0


class CountedDeepConvNet(DeepConvNet):
  """DeepConvNet that reports, as it runs, how many images each application takes."""

  def __call__(self, x, *, train: bool = False):
    jax.debug.callback(lambda rows: APPLIED.append(int(rows)), jnp.int32(x.shape[0]))
    return super().__call__(x, train=train)


APPLIED: list[int] = []


def test_evaluating_a_workdir_runs_the_model_once_per_example(classifier_run, monkeypatch):
  workdir, _ = classifier_run
  monkeypatch.setattr(build, 'model', lambda spec, num_classes: CountedDeepConvNet(
      num_classes=num_classes))
  APPLIED.clear()
  evaluation = evaluate_lib.evaluate_workdir(str(workdir), split='test')
  jax.effects_barrier()
  examples = len(evaluation.target.arrays)
  assert examples == 7
  # The test split padded to one batch of 8 for metrics and outputs together, then the
  # report's Grad-CAM of 7 samples: no second pass for the report's figures.
  assert sum(APPLIED) == 8 + examples, APPLIED
  assert evaluation.outputs['probabilities'].shape == (examples, 7)


def test_a_run_is_scored_on_the_dataset_version_it_trained_on(classifier_run, layouts, tmp_path):
  description = json.loads((classifier_run[0] / 'config.json').read_text())
  full_name = description['dataset_full_name']  # e.g. ham10000/images/2.0.0
  found = builders.reopen(full_name, data_dirs=[str(tmp_path / 'empty'), layouts['data_dir']])
  assert found.info.full_name == full_name
  # A version this code does not build is never rebuilt in its place (other splits).
  current = builders.builder_class('ham10000').VERSION
  with pytest.raises(builders.DatasetNotBuilt,
                     match=rf'ham10000/images/0.9.0 is not prepared in {tmp_path}, and this '
                           rf'code builds ham10000 {current}'):
    builders.reopen('ham10000/images/0.9.0', data_dirs=[str(tmp_path)],
                    manual_dir=layouts['ham10000'])
