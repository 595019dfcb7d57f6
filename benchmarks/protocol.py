"""How every row is measured and handed to the suite, skinjax's and the baselines' alike.

Timing:
The first step is timed alone (it compiles or traces); `warmup` more steps follow; then
`windows` timed windows, each ending in the framework's wait for its device (`sync`).
A window holds enough steps to last `min_window_s`, judged from the warm-up steps, so
fast steps are not timed one dispatch at a time. The row's rate is the median window's.

Reporting: each worker process prints its rows as `ROW <json>` lines (`emit`).
"""

import dataclasses
import json
import math
import statistics
import time
from typing import Callable


@dataclasses.dataclass
class Timing:
  """images_per_s: median over windows; step_s: the matching time per step."""

  images_per_s: float
  step_s: float
  first_step_s: float
  steps_per_window: int
  window_images_per_s: list[float]


def time_steps(step: Callable[[], object], sync: Callable[[object], None], batch_size: int,
               *, windows: int = 5, warmup: int = 2, min_window_s: float = 0.5) -> Timing:
  """Times `step()` (one training or evaluation step on a batch of `batch_size`).

  sync(out) must return only once the work behind `out`, a step's return value, is done
  (jax.block_until_ready, torch.cuda.synchronize, reading a TF tensor).
  """
  if windows < 1 or warmup < 0:
    raise ValueError(f'need windows >= 1 and warmup >= 0, got {windows} and {warmup}')
  start = time.perf_counter()
  sync(step())
  first = time.perf_counter() - start
  start = time.perf_counter()
  out = None
  for _ in range(warmup):
    out = step()
  sync(out)
  # Without warm-up steps the first (compiling) step is all we know of the step time.
  estimate = (time.perf_counter() - start) / warmup if warmup else first
  steps = max(1, math.ceil(min_window_s / max(estimate, 1e-6)))
  rates = []
  for _ in range(windows):
    start = time.perf_counter()
    for _ in range(steps):
      out = step()
    sync(out)
    rates.append(steps * batch_size / (time.perf_counter() - start))
  median = statistics.median(rates)
  return Timing(images_per_s=median, step_s=batch_size / median, first_step_s=first,
                steps_per_window=steps, window_images_per_s=rates)


# Workers (skinjax_step.py, keras_step.py, timm_step.py, depthwise.py) run one framework
# each in a process of their own, so thread pools, allocators and peak-memory counters
# never mix, and a row that runs out of memory fails alone.
ROW_PREFIX = 'ROW '


def emit(row: dict) -> None:
  """Prints `row` for the suite to collect (flushed: the suite reads as it goes)."""
  print(ROW_PREFIX + json.dumps(row, sort_keys=True), flush=True)


def parse_rows(stdout: str) -> list[dict]:
  return [json.loads(line[len(ROW_PREFIX):]) for line in stdout.splitlines()
          if line.startswith(ROW_PREFIX)]
