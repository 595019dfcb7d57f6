"""Small configs and a train helper shared by the tests that need trained runs."""

from skinjax.train import experiment, trainer


def classifier_config(epochs=2, **changes):
  """Paper 1's DeepConvNet setup, shrunk to a few steps."""
  config = experiment.base_config()
  config.model = 'deepconvnet'
  config.dataset, config.dataset_config = 'ham10000', 'images'
  config.image_size = 28
  config.balance = 'paper1'
  config.augment = 'paper1_classification'
  config.batch_size = config.eval_batch_size = 8
  config.phases = [experiment.phase('train', epochs=epochs, learning_rate=1e-3)]
  for key, value in changes.items():
    config[key] = value
  return config


def segmenter_config(epochs=2, **changes):
  """Paper 1's U-Net setup on the tiny U-Net at 32x32."""
  config = experiment.base_config()
  config.model = 'unet_tiny'
  config.task, config.loss = 'segmentation', 'jaccard'
  config.dataset = 'ph2'
  config.image_size = 32
  config.augment = 'paper1_segmentation'
  config.batch_size = config.eval_batch_size = 4
  config.phases = [experiment.phase('train', epochs=epochs, learning_rate=3e-3)]
  config.best_metric = 'dice'
  for key, value in changes.items():
    config[key] = value
  return config


def train(config, workdir, layouts, dataset=None):
  return trainer.train_and_evaluate(config, str(workdir), data_dir=layouts['data_dir'],
                                    manual_dir=layouts[dataset or config.dataset],
                                    show_progress=False)
