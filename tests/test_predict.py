"""Predictions on user images: a classifier, a segmenter, and paper 1's segment-then-classify
diagnosis; one bad file fails alone."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinjax.evaluation import diagnose, predict as predict_lib
from skinjax.data import synthetic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def user_images(tmp_path_factory):
  """Two lesion photos (JPEG, and RGBA PNG), a grayscale one, and a damaged file."""
  folder = tmp_path_factory.mktemp('user_images')
  rng = np.random.default_rng(7)
  paths = []
  for index, kind in enumerate(('mel', 'nv', 'bkl')):
    appearance = synthetic.APPEARANCES[kind]
    image, _ = synthetic.draw_lesion(rng, 120, 160, appearance,
                                     synthetic.LesionShape.random(rng, appearance))
    path = folder / f'lesion{index}.{("jpg", "png", "png")[index]}'
    picture = Image.fromarray(image)
    picture = {0: picture, 1: picture.convert('RGBA'), 2: picture.convert('L')}[index]
    picture.save(path)
    paths.append(path)
  damaged = folder / 'damaged.jpg'
  damaged.write_bytes(paths[0].read_bytes()[:200])
  return paths + [damaged]


def predict(*args):
  result = subprocess.run([sys.executable, str(REPO / 'launch' / 'predict.py'), *map(str, args)],
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_classifier_gives_probabilities_and_a_bad_file_fails_alone(classifier_run, user_images,
                                                                    tmp_path):
  workdir, _ = classifier_run
  predict(f'--workdir={workdir}', f'--output_dir={tmp_path}', *user_images)
  for path in user_images[:3]:
    result = json.loads((tmp_path / f'{path.stem}.json').read_text())
    assert set(result['probabilities']) == set(synthetic.HAM10000_CLASSES)
    assert sum(result['probabilities'].values()) == pytest.approx(1.0, abs=1e-5)
    assert result['predicted_class'] == max(result['probabilities'],
                                            key=result['probabilities'].get)
  damaged = json.loads((tmp_path / 'damaged.json').read_text())
  assert 'damaged.jpg: not a readable image' in damaged['error']


def test_segmenter_writes_a_mask_at_the_image_size(segmenter_run, user_images, tmp_path):
  workdir, _ = segmenter_run
  predict(f'--workdir={workdir}', f'--output_dir={tmp_path}', user_images[0])
  result = json.loads((tmp_path / 'lesion0.json').read_text())
  mask = np.asarray(Image.open(result['mask']))
  assert mask.shape == (120, 160) and set(np.unique(mask)) <= {0, 255}
  assert result['lesion_fraction'] == pytest.approx((mask > 0).mean())
  assert Path(result['overlay']).exists()


def test_diagnosis_segments_crops_and_classifies(classifier_run, segmenter_run, user_images,
                                                 tmp_path):
  predict(f'--segmenter_workdir={segmenter_run[0]}', f'--classifier_workdir={classifier_run[0]}',
          f'--output_dir={tmp_path}', *user_images[:2])
  for path in user_images[:2]:
    result = json.loads((tmp_path / f'{path.stem}.json').read_text())
    assert result['predicted_class'] in synthetic.HAM10000_CLASSES
    assert Path(result['overlay']).stat().st_size > 5_000
    if result['lesion_found']:
      box = result['crop_box']
      assert 0 <= box['top'] < box['bottom'] <= 120 and 0 <= box['left'] < box['right'] <= 160


def test_the_diagnosis_classifies_the_crop_of_the_lesion_box(classifier_run, segmenter_run,
                                                             user_images):
  segmenter = predict_lib.Predictor(str(segmenter_run[0]))
  classifier = predict_lib.Predictor(str(classifier_run[0]))
  image = np.asarray(Image.open(user_images[0]).convert('RGB'))
  diagnosis = diagnose.diagnose(image, segmenter, classifier, margin=0.1)
  box = diagnosis.box or (0, 0, 120, 160)
  expected = classifier.probabilities(image[box[0]:box[2], box[1]:box[3]])
  assert diagnosis.probabilities == pytest.approx(expected)


def test_lesion_box_grows_by_the_margin_and_stays_inside_the_image():
  mask = np.zeros((100, 200), bool)
  mask[40:60, 10:110] = True  # 20 rows, 100 columns
  assert diagnose.lesion_box(mask, 0.1) == (38, 0, 62, 120)
  assert diagnose.lesion_box(np.zeros((5, 5), bool), 0.1) is None
