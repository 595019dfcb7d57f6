"""Segment, crop, classify over a split (paper 1's Fig. 17): each crop is the lesion's box
with its margin, cut from the image and resized; no lesion leaves the image whole; the
evaluation scores the crops with the classifier's checkpoint and says how they were cut."""

import json

import numpy as np
import pytest

from skinjax.data.arrays import resize_image
from skinjax.evaluation import crops
from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.train.spec import ConfigError


class BoxSegmenter:
  """Marks rows 10-29 and columns 20-59 of every image as lesion; nothing in an all-black
  image."""

  def mask(self, image):
    mask = np.zeros(image.shape[:2], bool)
    if image.any():
      mask[10:30, 20:60] = True
    return mask


def test_a_crop_is_the_lesion_box_with_its_margin_cut_and_resized():
  rng = np.random.default_rng(0)
  images = rng.integers(1, 256, (2, 80, 100, 3), dtype=np.uint8)
  images[1] = 0
  cut, found, areas = crops.cut(images, BoxSegmenter(), 28, margin=0.1)
  # Box rows 10..29 (20 tall) and columns 20..59 (40 wide), grown by 2 and 4 pixels.
  np.testing.assert_array_equal(cut[0], resize_image(np.ascontiguousarray(
      images[0, 8:32, 16:64]), 28))
  np.testing.assert_array_equal(cut[1], resize_image(images[1], 28))  # no lesion: whole
  assert found.tolist() == [True, False]
  np.testing.assert_allclose(areas, [24 * 48 / (80 * 100), 1.0])


def test_crops_of_the_test_split_are_scored_by_the_same_checkpoint(classifier_run,
                                                                    segmenter_run):
  workdir, whole = classifier_run
  evaluation = evaluate_workdir(str(workdir), split='test', crop_with=str(segmenter_run[0]))
  assert evaluation.target.name == 'test-lesion_crops'
  assert evaluation.run.step == evaluate_workdir(str(workdir), split='test').run.step
  report = json.loads((workdir / 'report' / 'test-lesion_crops' / 'report.json').read_text())
  assert report['examples'] == 7 and report['crops']['segmenter'] == str(segmenter_run[0])
  assert report['crops']['source_size'] == crops.SOURCE_SIZE
  assert 0 <= report['crops']['no_lesion_found'] <= 7
  assert evaluation.target.arrays.images.shape[1:] == (28, 28, 3)
  assert set(whole) == set(evaluation.metrics)


@pytest.mark.parametrize('which,message', [
    ('classifier', "a classification run; expected a segmenter's workdir"),
    ('missing', 'no such folder'),
])
def test_crop_with_names_what_it_cannot_use(classifier_run, tmp_path, which, message):
  workdir = str(classifier_run[0])
  segmenter = workdir if which == 'classifier' else str(tmp_path / 'none')
  with pytest.raises(ConfigError, match=f'^--crop_with={segmenter}: {message}'):
    evaluate_workdir(workdir, split='test', crop_with=segmenter)


def test_crop_with_takes_no_other_dataset(classifier_run, segmenter_run):
  with pytest.raises(ConfigError, match="^--crop_with: crops a split of the run's own data"):
    evaluate_workdir(str(classifier_run[0]), split='all', dataset='isic9',
                     crop_with=str(segmenter_run[0]))


def test_a_split_cut_by_its_own_masks_keeps_labels_and_ids_and_drops_the_masks():
  from skinjax.data import lesion_crops
  from skinjax.data.arrays import SplitArrays
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (2, 60, 60, 3), dtype=np.uint8)
  masks = np.zeros((2, 60, 60, 1), np.uint8)
  masks[0, 5:15, 30:50] = 1  # box rows 5..14, cols 30..49: grown by 1 and 2
  cut = lesion_crops.crop_split(SplitArrays(images, np.array([3, 4]), np.array(['a', 'b']),
                                            masks), 16)
  np.testing.assert_array_equal(cut.images[0], resize_image(np.ascontiguousarray(
      images[0, 4:16, 28:52]), 16))
  np.testing.assert_array_equal(cut.images[1], resize_image(images[1], 16))  # empty mask
  assert cut.labels.tolist() == [3, 4] and cut.image_ids.tolist() == ['a', 'b']
  assert cut.masks is None


@pytest.mark.parametrize('changes,message', [
    ({'dataset_config': 'images'}, 'cuts by the lesion masks, which ham10000 images does not '
                                   'have; configs with masks: with_masks'),
    ({'dataset_config': 'with_masks', 'task': 'segmentation', 'model': 'unet_tiny',
      'loss': 'jaccard', 'best_metric': 'dice', 'balance': 'none'},
     'crops feed a classifier'),
])
def test_crop_to_lesion_names_what_it_needs(changes, message):
  from training_runs import classifier_spec
  with pytest.raises(ConfigError, match=f'^--config.crop_to_lesion: {message}'):
    classifier_spec(crop_to_lesion=True, **changes)


def test_a_run_on_lesion_crops_trains_on_its_splits_cut_by_their_masks(layouts):
  from skinjax.data import experiment_data, lesion_crops
  from training_runs import classifier_spec
  spec = classifier_spec(dataset_config='with_masks', crop_to_lesion=True, balance='none')
  data = experiment_data.prepare(spec, data_dir=layouts['data_dir'],
                                 manual_dir=layouts['ham10000'])
  whole = experiment_data.prepare(spec.replace(crop_to_lesion=False,
                                               image_size=lesion_crops.SOURCE_SIZE),
                                  data_dir=layouts['data_dir'], manual_dir=layouts['ham10000'])
  for name in ('train', 'validation', 'test'):
    cut, source = getattr(data, name), getattr(whole, name)
    np.testing.assert_array_equal(cut.image_ids, source.image_ids)
    np.testing.assert_array_equal(cut.images, lesion_crops.crop_split(source, 28).images)
    assert cut.masks is None and cut.images.shape[1:] == (28, 28, 3)
