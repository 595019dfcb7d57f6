"""An ordered map over threads, for decoding and encoding image files.

PIL and zlib release the GIL while they work, so threads keep every core busy without
the cost of processes.
"""

import concurrent.futures
import os
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar('T')
R = TypeVar('R')


def map_in_threads(function: Callable[[T], R], items: Iterable[T],
                   workers: int | None = None) -> Iterator[R]:
  """Yields function(item) for each item, in order, computed by `workers` threads."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
    yield from pool.map(function, items)
