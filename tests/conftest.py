"""Fixtures shared by test modules: small synthetic layouts and runs trained on them."""

import json

import pytest

from skinjax.data import synthetic
from training_runs import classifier_spec, segmenter_spec, train


@pytest.fixture(scope='session')
def layouts(tmp_path_factory):
  """Synthetic HAM10000 (5 single-image lesions per class) and PH2 (6 cases per class)."""
  root = tmp_path_factory.mktemp('layouts')
  ham = synthetic.write_ham10000(root / 'HAM10000', lesions_per_class={
      name: 5 for name in synthetic.HAM10000_CLASSES}, image_size=(40, 30), max_views=1)
  ph2 = synthetic.write_ph2(root / 'PH2', cases_per_class={
      name: 6 for name in synthetic.PH2_CLASSES}, image_size=(64, 48))
  return {'ham10000': str(ham), 'ph2': str(ph2), 'data_dir': str(root / 'tfds')}


@pytest.fixture(scope='session')
def ham_in_isic9(tmp_path_factory):
  """Synthetic HAM10000 (4 single-image lesions per class, 64x48) and ISIC9 layouts, the
  ISIC9 one holding `copies` HAM10000 images squashed to 64x64 and re-encoded: manual
  dirs, the count, and what synthetic.write_isic9 says it planted."""
  root = tmp_path_factory.mktemp('isic_with_ham')
  copies = 12
  ham = synthetic.write_ham10000(root / 'HAM10000', lesions_per_class={
      name: 4 for name in synthetic.HAM10000_CLASSES}, image_size=(64, 48), max_views=1)
  isic = synthetic.write_isic9(root / 'ISIC9', train_per_class=4, test_per_class=1,
                               image_size=(64, 64), ham10000=ham, ham10000_copies=copies)
  return {'ham10000': str(ham), 'isic9': str(isic), 'copies': copies,
          'planted': json.loads((isic / synthetic.PLANTED).read_text())}


@pytest.fixture(scope='session')
def classifier_run(layouts, tmp_path_factory):
  """DeepConvNet trained 2 epochs with pmap on the 4 test devices: (workdir, test metrics)."""
  workdir = tmp_path_factory.mktemp('classifier')
  return workdir, train(classifier_spec(), workdir, layouts)


@pytest.fixture(scope='session')
def segmenter_run(layouts, tmp_path_factory):
  """The tiny U-Net trained 2 epochs: (workdir, test metrics)."""
  workdir = tmp_path_factory.mktemp('segmenter')
  return workdir, train(segmenter_spec(), workdir, layouts)
