"""Per-epoch metrics: metrics.jsonl (one line per epoch), TensorBoard scalars, a summary line.

Only process 0 writes (the others' writers do nothing), as in multi-process runs.
"""

import json
import math
import os

import jax

METRICS_FILE = 'metrics.jsonl'
SUMMARY_KEYS = ('loss', 'accuracy', 'balanced_accuracy', 'dice', 'iou', 'mean_iou')


def read_history(workdir: str) -> list[dict]:
  """The epoch records of metrics.jsonl, in order ([] when there is none)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as file:
    return [json.loads(line) for line in file if line.strip()]


def _scalars(prefix: str, metrics: dict) -> dict:
  return {f'{prefix}/{key}': float(value) for key, value in metrics.items()
          if isinstance(value, (int, float)) and not isinstance(value, bool)}


def summary_line(epoch: int, num_epochs: int, record: dict) -> str:
  parts = [f'epoch {epoch + 1}/{num_epochs}']
  for split in ('train', 'validation'):
    values = record.get(split, {})
    shown = [f'{key} {values[key]:.4f}' for key in SUMMARY_KEYS
             if isinstance(values.get(key), float) and not math.isnan(values[key])]
    if shown:
      parts.append(f'{split} ' + ' '.join(shown))
  parts.append(f"{record['images_per_second']:.0f} images/s, {record['seconds']:.1f}s")
  return ' | '.join(parts)


class MetricWriter:
  """Appends epoch records to <workdir>/metrics.jsonl and <workdir>/tensorboard/.

  resume_epoch: records of this epoch and later (left by an interrupted run that had not
    checkpointed them) are dropped before appending.
  """

  def __init__(self, workdir: str, *, resume_epoch: int = 0):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tensorboard = None
    self.history: list[dict] = []  # the run's records so far (process 0: earlier ones too)
    if not self.active:
      return
    kept = [r for r in read_history(workdir) if r['epoch'] < resume_epoch]
    self.history = list(kept)
    temporary = self.path + '.tmp'
    with open(temporary, 'w') as file:
      file.writelines(json.dumps(record) + '\n' for record in kept)
    os.replace(temporary, self.path)
    import tensorflow as tf  # TensorBoard's writer; TF is here for TFDS already
    self._tensorboard = tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard'))

  def write(self, record: dict):
    """record: {'epoch', 'step', 'train': {...}, 'validation': {...}, ...}."""
    self.history.append(record)
    if not self.active:
      return
    with open(self.path, 'a') as file:
      file.write(json.dumps(record) + '\n')
    import tensorflow as tf
    scalars = {**_scalars('train', record.get('train', {})),
               **_scalars('validation', record.get('validation', {})),
               'images_per_second': float(record['images_per_second'])}
    with self._tensorboard.as_default(step=record['step']):
      for name, value in scalars.items():
        tf.summary.scalar(name, value)
    self._tensorboard.flush()

  def close(self):
    if self._tensorboard is not None:
      self._tensorboard.close()
