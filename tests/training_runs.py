"""Small run specs and a train-then-score helper shared by the tests that need trained runs."""

from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.train import trainer
from skinjax.train.phases import Phase
from skinjax.train.spec import RunSpec


def classifier_spec(epochs=2, **changes) -> RunSpec:
  """Paper 1's DeepConvNet setup, shrunk to a few steps."""
  fields = dict(model='deepconvnet', dataset='ham10000', dataset_config='images',
                image_size=28, balance='paper1', augment='paper1_classification',
                batch_size=8, eval_batch_size=8,
                phases=(Phase('train', epochs=epochs, learning_rate=1e-3),))
  return RunSpec(**{**fields, **changes})


def segmenter_spec(epochs=2, **changes) -> RunSpec:
  """Paper 1's U-Net setup on the tiny U-Net at 32x32."""
  fields = dict(model='unet_tiny', task='segmentation', loss='jaccard', dataset='ph2',
                image_size=32, augment='paper1_segmentation', batch_size=4,
                eval_batch_size=4, best_metric='dice',
                phases=(Phase('train', epochs=epochs, learning_rate=3e-3),))
  return RunSpec(**{**fields, **changes})


def train_only(spec, workdir, layouts, dataset=None) -> trainer.TrainResult:
  """Trains (or resumes) `spec` in `workdir` on the synthetic `layouts`, without the test
  split's evaluation and report: for tests that look at the checkpoints and logs alone."""
  return trainer.train(spec, str(workdir), data_dir=layouts['data_dir'],
                       manual_dir=layouts[dataset or spec.dataset], show_progress=False)


def train(spec, workdir, layouts, dataset=None):
  """Trains `spec` in `workdir` on the synthetic `layouts`, scores the test split as the
  launcher does; returns the test metrics."""
  result = train_only(spec, workdir, layouts, dataset)
  return evaluate_workdir(str(workdir), split='test', history=result.history).metrics

