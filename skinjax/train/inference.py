"""Logits of a whole split, in order, through a parallel wrapper's predict step."""

import numpy as np

from skinjax.data import pipeline


def predict_split(parallel, state, feed: pipeline.InputPipeline, order: list[dict]) -> np.ndarray:
  """float32 logits for every example of `feed`'s arrays: [N, classes] or [N, H, W, 1].

  order: pipeline.eval_order batches (padded, possibly sharded); the logits of each batch
  come back whole to every process and go to their examples' rows, padding dropped.
  """
  outputs = None
  for batch, placed in zip(order, feed.batches(order)):
    logits = parallel.predict(state, placed, feed.data)
    if outputs is None:
      outputs = np.zeros((len(feed.arrays),) + logits.shape[1:], logits.dtype)
    outputs[batch['index'][batch['valid']]] = logits[batch['valid']]
  return outputs if outputs is not None else np.zeros((0,), np.float32)


def gradcam_samples(run, arrays, *, count: int = 8):
  """Grad-CAM of the predicted class for `count` examples spread over a split.

  run: a skinjax.train.run_state.RestoredRun of a classifier. Returns (uint8 images,
  heatmaps float32[n, S, S] in [0, 1], titles 'true -> predicted (probability)').
  """
  import jax

  from skinjax.explain.gradcam import gradcam
  indices = np.unique(np.linspace(0, len(arrays) - 1, min(count, len(arrays))).astype(int))
  images = arrays.images[indices]
  norm = run.description['normalization']
  inputs = (images.astype(np.float32) - np.asarray(norm['mean'], np.float32)) / np.asarray(
      norm['std'], np.float32)
  variables = {'params': run.state.params}
  if run.state.batch_stats:
    variables['batch_stats'] = run.state.batch_stats
  heatmaps, logits = jax.device_get(gradcam(run.model, variables, inputs))
  probabilities = np.exp(logits - logits.max(-1, keepdims=True))
  probabilities /= probabilities.sum(-1, keepdims=True)
  names = run.description['class_names']
  titles = [f'{names[label]} -> {names[p.argmax()]} ({p.max():.2f})'
            for label, p in zip(arrays.labels[indices], probabilities)]
  return images, heatmaps, titles
