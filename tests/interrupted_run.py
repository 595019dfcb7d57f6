"""Trains tests/training_runs.classifier_spec() and sends itself a signal at one moment.

  python interrupted_run.py WORKDIR DATA_DIR MANUAL_DIR SIGNAL MOMENT N

SIGNAL: TERM, INT, KILL, INT2 (two SIGINTs at once: the second stops the run there), or FULL: from then on the operating system refuses to let any file
grow past 4 KiB (RLIMIT_FSIZE, its write failing with EFBIG as a full disk's fails with
ENOSPC), so the next checkpoint's arrays cannot be written. MOMENT: 'step' (just before
the N-th train step is dispatched) or 'save' (as soon as the N-th checkpoint save has been
handed to orbax, its asynchronous write still in flight; FULL waits for that write to
finish first). Exits 128 + the signal number when SIGTERM or SIGINT stopped the run, as
the launcher does.
Used by test_interruptions.py: real signals and write failures, at moments chosen exactly.
"""

import os
import resource
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from skinjax.train import checkpoint, trainer  # noqa: E402
from training_runs import classifier_spec  # noqa: E402


def main():
  workdir, data_dir, manual_dir, signal_name, moment, count = sys.argv[1:7]
  calls = [0]

  def fill_the_disk(checkpointer):
    checkpointer.wait()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

  def count_and_maybe_signal(checkpointer=None):
    calls[0] += 1
    if calls[0] == int(count):
      if signal_name == 'FULL':
        fill_the_disk(checkpointer)
      elif signal_name == 'INT2':
        os.kill(os.getpid(), signal.SIGINT)
        # Python runs a handler once for signals that arrive before it runs: a sleep lets
        # the first one's run, as a person's second Ctrl-C comes after the first's.
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)
      else:
        os.kill(os.getpid(), getattr(signal, f'SIG{signal_name}'))

  if moment == 'step':
    real = trainer.make_parallel

    def signalling_parallel(*args, **kwargs):
      parallel = real(*args, **kwargs)
      step = parallel.train_step

      def train_step(*step_args):
        count_and_maybe_signal()
        return step(*step_args)

      parallel.train_step = train_step
      return parallel

    trainer.make_parallel = signalling_parallel
  else:
    real_save = checkpoint.Checkpointer.save

    def save(self, *args, **kwargs):
      saved = real_save(self, *args, **kwargs)
      count_and_maybe_signal(self)
      return saved

    checkpoint.Checkpointer.save = save
  spec = classifier_spec(epochs=2, checkpoint_every_steps=4)
  try:
    trainer.train(spec, workdir, data_dir=data_dir, manual_dir=manual_dir,
                  show_progress=False)
  except trainer.Preempted as stopped:
    print(stopped, file=sys.stderr)
    sys.exit(stopped.exit_status)
  except KeyboardInterrupt:  # as launch/train.py answers a second SIGINT
    print('stopped by a second SIGINT', file=sys.stderr)
    sys.exit(130)


if __name__ == '__main__':
  main()
