"""Per-epoch metrics: metrics.jsonl (one line per epoch), TensorBoard scalars, a summary line.

Only process 0 writes (the others' writers do nothing), as in multi-process runs.
"""

import contextlib
import itertools
import json
import math
import os
import socket
import time

import jax
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.record_writer import RecordWriter

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


class MetricWriteError(RuntimeError):
  """A file of the run's metrics could not be written; the message names it."""


@contextlib.contextmanager
def _writing(path: str):
  """OSError while writing `path` as a MetricWriteError naming it (a launcher's one line)."""
  try:
    yield
  except OSError as error:
    raise MetricWriteError(f'{path}: cannot write the run\'s metrics there '
                           f'({error.strerror or error})') from error


_EVENT_FILES = itertools.count()  # this process's event files, for unique names


class EventFile:
  """A TensorBoard event file (TFRecord-framed `Event` protos, as tf.summary writes them),
  written with the tensorboard package alone: TensorFlow's writer cost every training
  process TensorFlow's import, 6 s of a launcher's start on 2 cores."""

  def __init__(self, folder: str):
    self.folder = folder
    os.makedirs(folder, exist_ok=True)
    name = (f'events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.'
            f'{os.getpid()}.{next(_EVENT_FILES)}')
    self._records = RecordWriter(open(os.path.join(folder, name), 'wb'))
    self._write(event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2'))

  def _write(self, event):
    self._records.write(event.SerializeToString())
    self._records.flush()

  def scalars(self, step: int, values: dict[str, float]):
    """One event at `step` holding each value as a scalar summary (TensorBoard's scalars
    plugin, the form tf.summary.scalar writes)."""
    summary = summary_pb2.Summary(value=[value for tag, number in values.items()
                                         for value in scalar_pb(tag, number).value])
    self._write(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

  def close(self):
    self._records.close()


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
    tensorboard = os.path.join(workdir, 'tensorboard')
    with _writing(tensorboard):  # first: a failure here leaves metrics.jsonl as it was
      self._tensorboard = EventFile(tensorboard)
    temporary = self.path + '.tmp'
    with _writing(self.path):
      with open(temporary, 'w') as file:
        file.writelines(json.dumps(record) + '\n' for record in kept)
      os.replace(temporary, self.path)

  def write(self, record: dict):
    """record: {'epoch', 'step', 'train': {...}, 'validation': {...}, ...}."""
    self.history.append(record)
    if not self.active:
      return
    with _writing(self.path), open(self.path, 'a') as file:
      file.write(json.dumps(record) + '\n')
    scalars = {**_scalars('train', record.get('train', {})),
               **_scalars('validation', record.get('validation', {})),
               'images_per_second': float(record['images_per_second'])}
    with _writing(self._tensorboard.folder):
      self._tensorboard.scalars(record['step'], scalars)

  def close(self):
    if self._tensorboard is not None:
      self._tensorboard.close()
