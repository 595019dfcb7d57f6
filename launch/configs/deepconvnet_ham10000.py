"""Paper 1, Table 1: DeepConvNet on HAM10000 at 28x28.

Adam 1e-3, batch 64, 20 epochs; Keras ImageDataGenerator augmentation (rotation 10,
shifts 0.2, shear 0.2, both flips); Table 4's class balancing by duplication, applied to
the training split only. `--config.split_protocol=paper` reproduces the paper's duplicate-then-
split protocol instead of the default lesion-grouped split.
"""

from skinjax.train import spec


def get_config():
  config = spec.base_config()
  config.model = 'deepconvnet'
  config.task = 'classification'
  config.dataset = 'ham10000'
  config.dataset_config = 'images'
  config.image_size = 28
  config.balance = 'paper1'
  config.augment = 'paper1_classification'
  config.batch_size = 64
  config.eval_batch_size = 256
  config.phases = [spec.phase('train', epochs=20, learning_rate=1e-3)]
  config.best_metric = 'accuracy'
  return config
