"""SIGTERM (how schedulers pre-empt a job) and SIGINT (Ctrl-C) as a flag the loop polls.

The handler only records the request; the loop finishes the step it is in, saves a
checkpoint, waits for it to be on disk and stops (skinjax.train.trainer.Preempted). A
second SIGINT does not wait: it stops at once (KeyboardInterrupt), losing at most the steps
since the last complete checkpoint, as a kill would.
"""

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionWatch:
  """Context manager: while inside, SIGTERM and SIGINT set `requested` instead of killing.

  `signal_number` is the first one received. Signal handlers can only be installed from
  the main thread; elsewhere the watch is inert and the signals keep their meaning.
  """

  def __init__(self):
    self.requested = False
    self.signal_number: int | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt  # the second Ctrl-C: stop now
    self.requested = True
    self.signal_number = self.signal_number or signum

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {number: signal.signal(number, self._handle) for number in SIGNALS}
    return self

  def __exit__(self, *exc_info):
    for number, previous in self._previous.items():
      signal.signal(number, previous)
    self._previous = {}
    return False
