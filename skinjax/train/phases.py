"""Training phases: what a phase is, when it runs, and what it trains.

A run is one or more phases in order, epochs counted across them (paper 2: the head on a
frozen backbone, then fine-tuning). Each phase clones the model with its overrides
(e.g. `train_backbone=False`) and starts a fresh optimizer at its learning rate; for a
transfer-learning classifier the optimizer moves only what the phase trains.
"""

import dataclasses
import types
from typing import Any, Mapping, Sequence

import jax

from skinjax.train import transfer
from skinjax.train.state import create_train_state, keras_adam


@dataclasses.dataclass(frozen=True)
class Phase:
  """epochs at learning_rate, the model cloned with model_overrides."""

  name: str
  epochs: int
  learning_rate: float
  model_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    # Frozen all the way down: a phase is part of a run's fixed description.
    object.__setattr__(self, 'model_overrides',
                       types.MappingProxyType(dict(self.model_overrides)))

  def replace(self, **changes) -> 'Phase':
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return {'name': self.name, 'epochs': self.epochs, 'learning_rate': self.learning_rate,
            'model_overrides': dict(self.model_overrides)}


def boundaries(phases: Sequence[Phase]) -> list[tuple[int, int]]:
  """(first epoch, end epoch) of each phase."""
  bounds, start = [], 0
  for phase in phases:
    bounds.append((start, start + phase.epochs))
    start += phase.epochs
  return bounds


def total_epochs(phases: Sequence[Phase]) -> int:
  return sum(phase.epochs for phase in phases)


def phase_of_epoch(phases: Sequence[Phase], epoch: int) -> int:
  """The index of the phase that runs `epoch` (the last phase past the end)."""
  for index, (start, end) in enumerate(boundaries(phases)):
    if start <= epoch < end:
      return index
  return len(phases) - 1


def is_last_epoch_of_phase(phases: Sequence[Phase], epoch: int) -> bool:
  return epoch + 1 == boundaries(phases)[phase_of_epoch(phases, epoch)][1]


def phase_model(phase: Phase, model):
  """The model as `phase` runs it (e.g. with the backbone frozen)."""
  return model.clone(**phase.model_overrides) if phase.model_overrides else model


def optimizer(model, learning_rate: float):
  """Keras' Adam; for a transfer-learning classifier, only on what its phase trains."""
  tx = keras_adam(learning_rate)
  if hasattr(model, 'train_backbone'):
    return transfer.transfer_optimizer(model, tx)
  return tx


def state_template(phase: Phase, model, image_size: int):
  """(abstract TrainState of `phase`, its optimizer): shapes only, nothing allocated."""
  model = phase_model(phase, model)
  tx = optimizer(model, phase.learning_rate)
  shape = (1, image_size, image_size, 3)
  return jax.eval_shape(lambda: create_train_state(jax.random.key(0), model, shape, tx)), tx
