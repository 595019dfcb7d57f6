"""Paper 1's segment-then-classify (Fig. 17) over a whole split: a segmenter run finds each
image's lesion, its box (with a margin) is cut from the image at a higher resolution and
resized to the classifier's input, and the classifier scores the crops; the same
checkpoint's score on the whole images is the comparison."""

import dataclasses
import os

import numpy as np

from skinjax.data import experiment_data, lesion_crops
from skinjax.data.arrays import SplitArrays
from skinjax.evaluation import targets as targets_lib
from skinjax.evaluation.predict import Predictor
from skinjax.train.spec import ConfigError

# The resolution the crops are cut from: the segmenters here train at 64-224, and a box
# of a third of the image still holds 75 pixels a side at 224, more than a 28x28 input.
SOURCE_SIZE = lesion_crops.SOURCE_SIZE
MARGIN = lesion_crops.MARGIN


def cut(images: np.ndarray, segmenter: Predictor, size: int, margin: float):
  """(uint8[N, size, size, 3] crops, bool[N] lesion found, float[N] box area fraction):
  each image's lesion box cut and resized; the whole image where no lesion is found."""
  crops, found, areas = [], [], []
  for image in images:
    box = lesion_crops.lesion_box(segmenter.mask(image), margin)
    found.append(box is not None)
    height, width = image.shape[:2]
    areas.append(1.0 if box is None else (box[2] - box[0]) * (box[3] - box[1]) / (height * width))
    crops.append(lesion_crops.cut(image, box, size))
  return (np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
          np.array(found, bool), np.array(areas))


def crop_target(run, target: targets_lib.Target, builder, segmenter_workdir: str, *,
                margin: float = MARGIN, source_size: int = SOURCE_SIZE) -> targets_lib.Target:
  """`target` (a split of the classifier run's own data) with each image replaced by its
  lesion crop; ConfigError naming the flag when the runs do not fit."""
  if run.spec.task != 'classification':
    raise ConfigError(f'--crop_with: crops are scored by a classifier; {run.workdir} holds a '
                      f'{run.spec.task} run')
  if not 0.0 <= margin <= 1.0:
    raise ConfigError(f'--crop_margin={margin}: expected a fraction of the box, 0 to 1')
  if not os.path.isdir(segmenter_workdir):
    raise ConfigError(f'--crop_with={segmenter_workdir}: no such folder')
  try:
    segmenter = Predictor(segmenter_workdir)
  except FileNotFoundError as error:
    raise ConfigError(f'--crop_with={segmenter_workdir}: {error}') from None
  if segmenter.task != 'segmentation':
    raise ConfigError(f'--crop_with={segmenter_workdir}: a {segmenter.task} run; expected a '
                      "segmenter's workdir (a U-Net run)")
  # The same split protocol and seed at the source resolution: the same examples, in order.
  spec = run.spec.replace(image_size=source_size, crop_to_lesion=False)
  source = targets_lib.own_split(
      experiment_data.prepare(spec, builder=builder, leave_out_overlap=False), target.split)
  if not np.array_equal(source.arrays.image_ids, target.arrays.image_ids):
    raise ConfigError(f'{builder.data_path}: the {target.split} split differs between '
                      f'{run.spec.image_size} and {source_size} pixels')
  crops, found, areas = cut(np.asarray(source.arrays.images), segmenter, run.spec.image_size,
                            margin)
  record = {'segmenter': segmenter_workdir, 'segmenter_step': segmenter.run.step,
            'segmenter_trained_on': segmenter.run.description.get('dataset_full_name'),
            'margin': margin, 'source_size': source_size,
            'no_lesion_found': int((~found).sum()),
            'mean_box_area': float(areas.mean()) if len(areas) else None}
  arrays = SplitArrays(crops, target.arrays.labels, target.arrays.image_ids)
  return dataclasses.replace(target, name=f'{target.name}-lesion_crops', arrays=arrays,
                             crops=record)
