"""Paper 1, Table 2: U-Net on PH2 at 224x224 with the Jaccard distance loss.

Adam 3e-3, batch 16, 100 epochs, spatial dropout 0.4 (in the model), rotation 40 and
horizontal flip, 80/20 split (validation carved from the 80).
"""

from skinjax.train import spec


def get_config():
  config = spec.base_config()
  config.model = 'unet'
  config.task = 'segmentation'
  config.loss = 'jaccard'
  config.dataset = 'ph2'
  config.image_size = 224
  config.augment = 'paper1_segmentation'
  config.batch_size = 16
  config.eval_batch_size = 16
  config.phases = [spec.phase('train', epochs=100, learning_rate=3e-3)]
  config.best_metric = 'dice'
  return config
