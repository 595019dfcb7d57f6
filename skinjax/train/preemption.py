"""SIGTERM (how schedulers pre-empt a job) as a flag the training loop polls.

The handler only records the request; the loop finishes the step it is in, saves a
checkpoint, waits for it to be on disk and stops (skinjax.train.trainer.Preempted).
"""

import signal
import threading


class PreemptionWatch:
  """Context manager: while inside, SIGTERM sets `requested` instead of killing.

  Signal handlers can only be installed from the main thread; elsewhere the watch is
  inert and SIGTERM keeps its previous meaning.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc_info):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
    return False
