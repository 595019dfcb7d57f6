r"""Predicts on image files with a trained run, or runs paper 1's segment-then-classify
diagnosis with two.

  python launch/predict.py --workdir=runs/dcn lesion1.jpg lesion2.png
  python launch/predict.py --segmenter_workdir=runs/unet --classifier_workdir=runs/dcn *.jpg

Writes one JSON per image (and, for segmenters and diagnoses, an overlay PNG) to
--output_dir. An image that cannot be read fails alone: its JSON holds the error and the
others are still predicted. Any size and mode PIL reads is accepted; see
skinjax/evaluation/predict.py for what happens to huge, 16-bit, grayscale and RGBA images.
"""

import json
import os
import sys

from absl import flags, logging
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import common_flags  # noqa: E402
import jax_startup  # noqa: E402
from skinjax.data.image_files import DatasetFileError  # noqa: E402
from skinjax.evaluation import diagnose as diagnose_lib, predict as predict_lib  # noqa: E402


def define(values, argv):
  del argv
  flags.DEFINE_string('workdir', None, 'A trained classifier or segmenter run.',
                      flag_values=values)
  flags.DEFINE_string('segmenter_workdir', None, 'A trained U-Net run (diagnosis).',
                      flag_values=values)
  flags.DEFINE_string('classifier_workdir', None, 'A trained classifier run (diagnosis).',
                      flag_values=values)
  flags.DEFINE_string('output_dir', None, 'Where results go (default: <workdir>/predictions).',
                      flag_values=values)
  flags.DEFINE_float('margin', 0.1, 'Crop margin around the lesion box, as a fraction of its '
                     'size (diagnosis).', lower_bound=0.0, flag_values=values)


def overlay(image, mask, path, title, box=None):
  # Clamped: a 1-pixel-wide strip would ask matplotlib for a figure taller than it draws.
  aspect = min(max(image.shape[0] / image.shape[1], 0.25), 4.0)
  figure, axis = plt.subplots(figsize=(6, 6 * aspect))
  axis.imshow(image)
  if mask.any() and not mask.all():
    axis.contour(mask.astype(float), levels=[0.5], colors='red', linewidths=1.5)
  if box is not None:
    top, left, bottom, right = box
    axis.add_patch(plt.Rectangle((left, top), right - left, bottom - top, fill=False,
                                 edgecolor='yellow', linewidth=1.5))
  axis.set_title(title, fontsize=10)
  axis.axis('off')
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def output_names(paths) -> list[str]:
  """A distinct output name per input: its file stem, numbered where stems repeat
  (a/x.jpg and b/x.png must not overwrite each other's results)."""
  names, used = [], set()
  for path in paths:
    stem = name = os.path.splitext(os.path.basename(path))[0]
    number = 1
    while name in used:
      number += 1
      name = f'{stem}_{number}'
    used.add(name)
    names.append(name)
  return names


def write_json(path, result):
  temporary = path + '.tmp'
  with open(temporary, 'w') as file:
    json.dump(result, file, indent=2)
  os.replace(temporary, path)  # a reader never sees half a result


def main(values, images):
  segmenter_dir, classifier_dir = values.segmenter_workdir, values.classifier_workdir
  pair = segmenter_dir or classifier_dir
  if not images:
    common_flags.fail('no image files given')
  if pair and not (segmenter_dir and classifier_dir):
    common_flags.fail('a diagnosis needs both --segmenter_workdir and --classifier_workdir')
  if not pair and not values.workdir:
    common_flags.fail('give --workdir, or --segmenter_workdir with --classifier_workdir')
  jax_startup.start()
  common_flags.quiet_orbax()
  try:
    if pair:
      segmenter = predict_lib.Predictor(segmenter_dir)
      classifier = predict_lib.Predictor(classifier_dir)
      if segmenter.task != 'segmentation' or classifier.task != 'classification':
        common_flags.fail(f'--segmenter_workdir holds a {segmenter.task} run and '
                          f'--classifier_workdir a {classifier.task} run; expected '
                          'segmentation and classification')
    else:
      single = predict_lib.Predictor(values.workdir)
  except FileNotFoundError as error:
    common_flags.fail(str(error))
  output_dir = values.output_dir or os.path.join(
      classifier_dir if pair else values.workdir, 'predictions')
  os.makedirs(output_dir, exist_ok=True)
  failures = 0
  for path, name in zip(images, output_names(images)):
    result = {'image': os.path.abspath(path)}
    try:
      image = predict_lib.read_image(path)
      result['analysed_size'] = [image.shape[1], image.shape[0]]  # width, height
      if pair:
        diagnosis = diagnose_lib.diagnose(image, segmenter, classifier, values.margin)
        result.update(diagnosis.to_json())
        result['overlay'] = os.path.join(output_dir, f'{name}_diagnosis.png')
        overlay(image, diagnosis.mask, result['overlay'],
                f'{diagnosis.predicted} {diagnosis.probabilities[diagnosis.predicted]:.2f}',
                diagnosis.box)
      elif single.task == 'classification':
        result['probabilities'] = single.probabilities(image)
        result['predicted_class'] = max(result['probabilities'], key=result['probabilities'].get)
      else:
        mask = single.mask(image)
        result['lesion_fraction'] = float(mask.mean())
        result['mask'] = os.path.join(output_dir, f'{name}_mask.png')
        from PIL import Image
        Image.fromarray((mask * 255).astype(np.uint8)).save(result['mask'])
        result['overlay'] = os.path.join(output_dir, f'{name}_overlay.png')
        overlay(image, mask, result['overlay'], f'lesion {mask.mean():.1%} of the image')
    except DatasetFileError as error:  # names the file and what was expected
      failures += 1
      result['error'] = str(error)
    except Exception as error:  # noqa: BLE001 - one image must not cost the batch
      logging.exception('%s: prediction failed', path)
      failures += 1
      result['error'] = f'{path}: prediction failed ({type(error).__name__}: {error})'
    write_json(os.path.join(output_dir, f'{name}.json'), result)
    print(f'{path}: ' + (result.get('error') or result.get('predicted_class') or
                         f"lesion {result['lesion_fraction']:.1%}"))
  print(f'results: {output_dir} ({len(images) - failures} of {len(images)} images predicted)')
  if failures == len(images):
    sys.exit(1)


if __name__ == '__main__':
  common_flags.run(main, define, positional=True)
