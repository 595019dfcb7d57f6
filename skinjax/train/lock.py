"""One writer per workdir: an OS file lock on <workdir>/.lock, held while a run trains.

The lock is the operating system's (flock), so it goes with its process: a run killed by
SIGKILL leaves no stale lock, and the next start takes it at once. The file records the
holder's host and pid so that a refused run can name it. Evaluation and prediction read a
workdir without the lock (they never write into checkpoints/), so a training run can be
evaluated while it runs.
"""

import fcntl
import os
import shutil
import socket
import time

from absl import logging

from skinjax.train.spec import ConfigError

LOCK_FILE = '.lock'
# Orbax writes each step under `<step>.orbax-checkpoint-tmp-<time>` and renames it when
# complete; a folder left with that name belongs to a write that never finished.
TEMPORARY_MARK = '.orbax-checkpoint-tmp'


class WorkdirLock:
  """Context manager: takes the lock of `workdir` or raises ConfigError naming its holder.

  Taking it writes nothing but the lock file's holder line; a refused run writes nothing.
  A run that stops before writing anything else (a mistake found after the lock was
  taken) leaves the workdir as it found it: a lock file or a folder it made is removed.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = None

  def __enter__(self):
    self._made = [path for path in (self.workdir, self.path) if not os.path.exists(path)]
    try:
      os.makedirs(self.workdir, exist_ok=True)
      file = open(self.path, 'a+')  # never truncates: the holder's line stays readable
    except OSError as error:
      raise ConfigError(f'--workdir={self.workdir}: cannot write there ({error.strerror})'
                        ) from None
    try:
      fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      file.seek(0)
      holder = file.read().strip() or 'another process'
      file.close()
      raise ConfigError(f'--workdir={self.workdir}: another run is writing there ({holder}); '
                        'wait for it to end, or give another --workdir') from None
    file.seek(0)
    file.truncate()
    file.write(f'host {socket.gethostname()} pid {os.getpid()} since '
               f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n')
    file.flush()
    self._file = file
    return self

  def __exit__(self, *exc_info):
    if self._file is None:
      return False
    if self.path in self._made and os.listdir(self.workdir) == [LOCK_FILE]:
      os.remove(self.path)  # nothing else was written: leave no trace of the attempt
      if self.workdir in self._made:
        os.rmdir(self.workdir)
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()
    self._file = None
    return False


def remove_unfinished_writes(*directories: str) -> list[str]:
  """Deletes the temporary folders of checkpoint writes that never finished (a killed
  run's) under `directories`; call only while holding the lock. Returns what it removed."""
  removed = []
  for directory in directories:
    if not os.path.isdir(directory):
      continue
    for name in sorted(os.listdir(directory)):
      if TEMPORARY_MARK in name:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
        removed.append(os.path.join(directory, name))
  if removed:
    logging.info('removed %d unfinished checkpoint write(s): %s', len(removed),
                 ', '.join(removed))
  return removed
