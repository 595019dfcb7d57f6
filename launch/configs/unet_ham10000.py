"""Paper 1's U-Net recipe (Table 2) on HAM10000's lesion masks, split by lesion.

The same model, loss and schedule as unet_ph2.py, trained on the 10,015 HAM10000 images
and their masks (Tschandl et al. 2020) instead of PH2's 200 cases; a segmenter trained
here can then be scored on every PH2 case:
  python launch/evaluate.py --workdir=W --dataset=ph2 --manual_dir=/data/PH2 --split=all
"""

from skinjax.train import spec


def get_config():
  config = spec.base_config()
  config.model = 'unet'
  config.task = 'segmentation'
  config.loss = 'jaccard'
  config.dataset = 'ham10000'
  config.dataset_config = 'with_masks'
  config.image_size = 224
  config.augment = 'paper1_segmentation'
  config.batch_size = 16
  config.eval_batch_size = 16
  config.phases = [spec.phase('train', epochs=100, learning_rate=3e-3)]
  config.best_metric = 'dice'
  return config
