"""Paper 2's EfficientNetV2-B3 classifier (backbone + its head) trained from scratch on
HAM10000, as the in-domain start for ISIC9 where ImageNet weights cannot be had.

Split by lesion; the images of ISIC9's validation and test splits (1,514 ISIC9 files are
HAM10000 pictures) are left out of the train split by their pixels, so that the ISIC9 runs
it starts are not scored on images it saw:
  --config.exclude_overlap_with=isic9/all9        (the grouped scenarios; default)
  --config.exclude_overlap_with=isic9/all9_paper  (paper 2's split by file)
Every scenario's validation and test images are among its all9 config's, so one
pretraining per protocol serves all four scenarios. Then:
  python launch/export_backbone.py --workdir=W --output=B
  python launch/train.py --config=launch/configs/efficientnetv2_b3_isic9.py \
      --config.init_from=B ...
Images enter at 0..255, as in the ISIC9 config. Epochs and batch are ours.
"""

from skinjax.train import spec


def get_config():
  config = spec.base_config()
  config.model = 'efficientnetv2_b3_skin'
  config.task = 'classification'
  config.dataset = 'ham10000'
  config.dataset_config = 'images'
  config.exclude_overlap_with = 'isic9/all9'
  config.image_size = 300
  config.augment = 'paper2_classification'
  config.normalization.mean = (0.0, 0.0, 0.0)
  config.normalization.std = (1.0, 1.0, 1.0)
  config.batch_size = 32
  config.eval_batch_size = 64
  config.phases = [spec.phase('train', epochs=10, learning_rate=1e-3, train_backbone=True)]
  config.best_metric = 'accuracy'
  return config
