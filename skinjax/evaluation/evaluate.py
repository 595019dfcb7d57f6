"""Scores a restored run on a target in one pass, and writes the report.

One inference pass (skinjax.train.passes.eval_pass) gives the metrics (accumulated on the
devices) and every example's outputs (class probabilities, or lesion masks) together; the
report's figures, scikit-learn's classification report and the Grad-CAM titles are made
from those outputs, so the model runs over the split once.
"""

import dataclasses
import math

import jax
import numpy as np

from skinjax import report as report_lib
from skinjax.data import experiment_data, pipeline
from skinjax.evaluation import crops as crops_lib
from skinjax.evaluation.kmeans_baseline import kmeans_scores
from skinjax.evaluation import targets as targets_lib
from skinjax.evaluation.restore import RestoredRun, restore_run
from skinjax.explain.gradcam import gradcam
from skinjax.train import build, multihost, passes
from skinjax.train import spec as spec_lib
from skinjax.train import workdir as workdir_lib
from skinjax.train.metric_writer import read_history
from skinjax.train.parallel import make_parallel

GRADCAM_SAMPLES = 8


@dataclasses.dataclass
class Evaluation:
  run: RestoredRun
  target: targets_lib.Target
  metrics: dict  # global over all processes
  outputs: dict  # per-example task outputs, one row per example of target.arrays
  report_dir: str | None  # None in processes other than 0, which write nothing
  report_error: str | None = None  # why the report could not be written (the metrics stand)


def evaluate(run: RestoredRun, arrays, *, parallel: str | None = None,
             batch_size: int | None = None) -> tuple[dict, dict]:
  """(metrics, per-example outputs) of `run` on `arrays` (a SplitArrays), in one pass.

  parallel: 'pmap' or 'jit' (default: the mode the run trained with). Any device and
  process count: one data shard per process (whatever the run trained with), the batch
  rounded up to a multiple of the devices and the shards.
  """
  spec = run.spec
  mode = parallel or spec.parallel
  spec_lib.check_processes(mode, spec.data_placement, jax.process_count(), flag='--parallel')
  steps = make_parallel(mode, run.model, run.task, preprocess=build.preprocess(spec))
  shards = jax.process_count()
  multiple = math.lcm(steps.num_devices, shards)
  size = -(-(batch_size or spec.eval_batch_size) // multiple) * multiple
  feed = pipeline.InputPipeline(arrays, steps, placement=spec.data_placement)
  order = pipeline.eval_order(len(arrays), size, shards)
  return passes.eval_pass(steps, steps.replicate(run.state), feed, order, keep_outputs=True)


def evaluate_workdir(workdir: str, *, split: str = 'test', dataset: str | None = None,
                     dataset_config: str = '', data_dir: str | None = None,
                     manual_dir: str | None = None, step='best', batch_size=None,
                     parallel: str | None = None, history: list | None = None,
                     crop_with: str | None = None,
                     crop_margin: float = crops_lib.MARGIN, kmeans: bool = False) -> Evaluation:
  """Restores the run in `workdir`, scores `split` of its own data (or of `dataset`), and
  writes the report under <workdir>/report/<target name>/ (process 0 only).

  history: the run's epoch records, when the caller has them (the trainer returns them);
  else read from the workdir.
  crop_with: a segmenter run's workdir: score the lesion crops it finds instead of the
    whole images (report/<split>-lesion_crops/; skinjax.evaluation.crops).
  kmeans: (a segmenter) also score paper 2's k-means segmentation on the same images, into
    the report's 'kmeans' entry.
  """
  if dataset_config and not dataset:
    raise spec_lib.ConfigError(f'--dataset_config={dataset_config}: only with --dataset (the '
                               'run\'s own data uses the config it trained with)')
  if crop_with and dataset:
    raise spec_lib.ConfigError('--crop_with: crops a split of the run\'s own data; drop '
                               '--dataset')
  run = restore_run(workdir, step=step)
  if kmeans and run.spec.task != 'segmentation':
    raise spec_lib.ConfigError(f'--kmeans: scores k-means beside a segmenter; {workdir} holds '
                               f'a {run.spec.task} run')
  # Refused before any data is read.
  spec_lib.check_processes(parallel or run.spec.parallel, run.spec.data_placement,
                           jax.process_count(), flag='--parallel')
  data_dir = data_dir or run.description['data_dir']
  if dataset:
    target = multihost.primary_first(lambda: targets_lib.other_dataset(
        run, dataset, dataset_config, split, data_dir=data_dir, manual_dir=manual_dir),
        'skinjax_dataset_built')
  else:
    # Only the validation and test splits are scored: the train split's left-out images
    # (spec.exclude_overlap_with) do not matter here, and the other dataset is not needed.
    builder = targets_lib.own_builder(run, data_dir, manual_dir)
    data = multihost.primary_first(lambda: experiment_data.prepare(
        run.spec, builder=builder, leave_out_overlap=False),
        'skinjax_dataset_built')
    target = targets_lib.own_split(data, split)
    if crop_with:
      target = crops_lib.crop_target(run, target, builder, crop_with, margin=crop_margin)
  metrics, outputs = evaluate(run, target.arrays, parallel=parallel, batch_size=batch_size)
  if kmeans:
    target.kmeans = {'k': 3, 'metrics': kmeans_scores(target.arrays, seed=run.spec.seed)}
  if not multihost.is_primary():
    return Evaluation(run, target, metrics, outputs, None)
  directory = workdir_lib.report_dir(workdir, target.name)
  try:
    report_lib.write_report(directory, _report_data(run, target, metrics, outputs,
                                                    read_history(workdir) if history is None
                                                    else history))
  except OSError as error:  # e.g. a read-only workdir: the scores are still worth having
    return Evaluation(run, target, metrics, outputs, None,
                      f'{directory}: cannot write the report there ({error.strerror}); '
                      'the metrics above are complete')
  return Evaluation(run, target, metrics, outputs, directory)


def _report_data(run, target, metrics, outputs, history) -> report_lib.ReportData:
  header = {'split': target.split, 'dataset': target.dataset_full_name,
            'trained_on': run.description['dataset_full_name'],
            'model': run.description['model'], 'checkpoint_step': run.step}
  if target.class_map is not None:
    header['class_map'] = target.class_map
  if target.excluded is not None:
    header['excluded'] = target.excluded
  if target.crops is not None:
    header['crops'] = target.crops
  if target.kmeans is not None:
    header['kmeans'] = target.kmeans
  arrays = target.arrays
  samples = None
  if run.spec.task == 'classification' and len(arrays):
    samples = gradcam_samples(run, arrays, outputs['probabilities'])
  return report_lib.ReportData(
      task=run.spec.task, header=header, metrics=metrics, images=arrays.images,
      labels=arrays.labels, masks=arrays.masks, outputs=outputs, class_names=run.class_names,
      history=history, gradcam=samples)


def sample_right_and_wrong(labels: np.ndarray, predicted: np.ndarray, count: int):
  """Up to `count` example indices, sorted: count // 2 right and the rest wrong, spread
  evenly over each group; where one group is short, the other fills the count."""
  right = np.flatnonzero(labels == predicted)
  wrong = np.flatnonzero(labels != predicted)
  take_wrong = min(len(wrong), max(count - count // 2, count - len(right)))
  take_right = min(len(right), count - take_wrong)

  def spread(group, taken):
    return group[np.unique(np.linspace(0, len(group) - 1, taken).astype(int))] if taken else []
  return np.sort(np.concatenate([spread(right, take_right),
                                 spread(wrong, take_wrong)]).astype(int))


def gradcam_samples(run: RestoredRun, arrays, probabilities: np.ndarray, *,
                    count: int = GRADCAM_SAMPLES):
  """Grad-CAM of the predicted class for `count` examples of a split: half of them
  classified right and half wrong where the split has both (each half spread over the
  split), so the figure shows what the model looks at when it fails too.

  probabilities: float32[N, classes] of the split, from the evaluation pass. Returns
  (uint8 images, heatmaps float32[n, S, S] in [0, 1], their labels, their probabilities).
  """
  indices = sample_right_and_wrong(np.asarray(arrays.labels),
                                   np.asarray(probabilities).argmax(axis=-1), count)
  images = np.asarray(arrays.images[indices])
  inputs = build.preprocess(run.spec)({'image': images}, None, None, train=False)['image']
  heatmaps, _ = jax.device_get(gradcam(run.model, run.variables, inputs))
  return images, heatmaps, np.asarray(arrays.labels)[indices], np.asarray(probabilities)[indices]
