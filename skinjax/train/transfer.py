"""Paper 2's transfer learning: which parameters the optimiser may move, phase by phase.

Phase 1 (`Classifier(train_backbone=False)`): the head trains; the backbone is frozen,
parameters and BatchNorm statistics both. Phase 2 (`train_backbone=True`): the whole
backbone fine-tunes, or with `trainable_blocks=N` only its last N blocks and its top
(efficientnet_v2.frozen_layers says which for EfficientNetV2; the comparison networks freeze
their blocks inside the model alone, in inference mode and without gradient, so Adam, whose
update of a zero gradient from a zero state is zero, leaves them where they are). The pure `skinjax.train.steps.train_step`
runs both phases unchanged: the model keeps frozen BatchNorms in inference mode and stops
gradients at the frozen part, and the optimiser built here leaves frozen parameters
exactly where they are (optax.set_to_zero, no optimiser state for them).
"""

import jax
import optax
from flax import traverse_util

from skinjax.models.efficientnet_v2 import frozen_layers

TRAINABLE, FROZEN = 'trainable', 'frozen'
BACKBONE = 'backbone'


def trainable_labels(params, *, train_backbone: bool, trainable_blocks: int | None = None):
  """A tree like `params` with TRAINABLE or FROZEN at each leaf.

  params: a Classifier's parameters ({'backbone': ..., 'head': ...}).
  """
  if BACKBONE not in params:
    raise KeyError(f"params have no {BACKBONE!r} subtree (found {sorted(params)}); expected "
                   'the parameters of skinjax.models.heads.Classifier')
  frozen = frozen_layers(params[BACKBONE], trainable_blocks) if train_backbone else None
  flat = traverse_util.flatten_dict(params)

  def label(path):
    if path[0] != BACKBONE:
      return TRAINABLE
    return FROZEN if frozen is None or path[1] in frozen else TRAINABLE

  return traverse_util.unflatten_dict({path: label(path) for path in flat})


def transfer_optimizer(model, optimizer: optax.GradientTransformation):
  """`optimizer` on the parameters `model` (a Classifier) trains; frozen ones never move."""
  def labels(params):
    return trainable_labels(params, train_backbone=model.train_backbone,
                            trainable_blocks=model.trainable_blocks)
  return optax.multi_transform({TRAINABLE: optimizer, FROZEN: optax.set_to_zero()}, labels)


def with_pretrained_backbone(variables: dict, backbone_variables: dict) -> dict:
  """`variables` of a Classifier with its backbone's replaced by `backbone_variables`.

  backbone_variables: {'params', 'batch_stats'} of the headless backbone, e.g. from
    skinjax.convert.keras_efficientnet_v2.load_converted. Every path and shape must
    match; all differences are listed in one error.
  """
  problems = []
  for collection in ('params', 'batch_stats'):
    ours = traverse_util.flatten_dict(variables[collection][BACKBONE])
    theirs = traverse_util.flatten_dict(backbone_variables.get(collection, {}))
    for path in sorted(set(ours) | set(theirs)):
      name = '/'.join((collection,) + path)
      if path not in theirs:
        problems.append(f'{name}: missing from the pretrained backbone (model {ours[path].shape})')
      elif path not in ours:
        problems.append(f'{name}: not in the model (pretrained {theirs[path].shape})')
      elif tuple(ours[path].shape) != tuple(theirs[path].shape):
        problems.append(f'{name}: model {tuple(ours[path].shape)}, pretrained '
                        f'{tuple(theirs[path].shape)}')
  if problems:
    raise ValueError('pretrained backbone does not fit the classifier:\n  ' + '\n  '.join(problems))
  result = dict(variables)
  for collection in ('params', 'batch_stats'):
    result[collection] = {**variables[collection],
                          BACKBONE: jax.tree.map(lambda x: x, backbone_variables[collection])}
  return result
