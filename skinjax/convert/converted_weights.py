"""Converted weights on disk: one orbax checkpoint (step 0) holding the variables and the
conversion's config (model name, classes, source file, report).

Written here with orbax directly, not through the training checkpointer: conversion sits
below training, and a converted file is read by `--config.init_from` long after. The
layout (items `state`, `config`, `progress` of step 0) is the one earlier versions wrote.
"""

import errno
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from skinjax.models import create_model

_STEP = 0


def _manager(directory: str, *, read_only: bool) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(read_only=read_only, enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def check_output_free(directory: str) -> None:
  """FileExistsError unless `directory` is absent or an empty folder (what
  `save_converted` writes into): callers check it before a long conversion too."""
  if os.path.isfile(directory) or (os.path.isdir(directory) and os.listdir(directory)):
    raise FileExistsError(f'{directory} exists and is not an empty folder')


def save_converted(directory: str, variables: dict, config: dict) -> None:
  """Writes `variables` and `config` as step 0 of an orbax checkpoint in `directory`.

  `directory` must not exist or be an empty folder. The checkpoint is written beside it
  and moved into place whole, so a conversion killed midway or a second one writing to the
  same folder leaves no half-written folder: FileExistsError when `directory` is (or became,
  meanwhile) a file or a folder with something in it.
  """
  directory = os.path.abspath(os.fspath(directory))
  check_output_free(directory)
  partial = f'{directory}.partial-{os.getpid()}'
  try:
    with _manager(partial, read_only=False) as manager:
      manager.save(_STEP, args=ocp.args.Composite(
          state=ocp.args.StandardSave(variables), config=ocp.args.JsonSave(config),
          progress=ocp.args.JsonSave({'converted': True})), force=True)
      manager.wait_until_finished()
    try:
      os.rename(partial, directory)  # atomic; takes the place of an empty folder only
    except OSError as error:
      if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
        raise FileExistsError(f'{directory} exists and is not an empty folder') from error
      raise
  finally:
    shutil.rmtree(partial, ignore_errors=True)


def load_converted(directory: str) -> tuple[Any, dict]:
  """(variables, config) saved by `save_converted` (e.g. by launch/convert_weights.py)."""
  directory = os.path.abspath(os.fspath(directory))
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'no converted weights in {directory}')
  with _manager(directory, read_only=True) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'no converted weights in {directory}')
    config = manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore())).config
    model = create_model(config['model'], num_classes=config['num_classes'])
    # Parameter shapes do not depend on the input size: the smallest input will do.
    shapes = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jax.numpy.zeros((1, 32, 32, 3)), train=False))
    template = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                            {k: shapes[k] for k in ('params', 'batch_stats') if k in shapes})
    variables = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(template))).state
  return variables, config
