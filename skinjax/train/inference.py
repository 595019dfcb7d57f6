"""Logits of a whole split, in order, through a parallel wrapper's predict step."""

import numpy as np

from skinjax.data import pipeline


def predict_split(parallel, state, feed: pipeline.InputPipeline, batch_size: int) -> np.ndarray:
  """float32 logits for every example of `feed`'s arrays: [N, classes] or [N, H, W, 1].

  The last batch is padded to `batch_size` (no recompilation) and its padding dropped.
  """
  num_examples = len(feed.arrays)
  order = pipeline.eval_order(num_examples, batch_size)
  outputs = [parallel.predict(state, batch, feed.data)[:len(index)]
             for index, batch in zip(order, feed.batches(order, pad_to=batch_size))]
  return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
