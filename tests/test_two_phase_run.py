"""Paper 2's launch config names its two phases: the head on a frozen backbone, then
fine-tuning at a lower rate. The run itself (both phases logged, each one's final weights
kept) is tested on the tiny plan's ISIC9 run that tests/test_reproduce.py trains through
the launchers: the same config, shrunk to the tiny backbone."""

import os
import sys

from skinjax.train.spec import RunSpec

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'launch'))
import common_flags  # noqa: E402


def test_the_paper_2_config_names_two_phases_the_second_unfreezing_the_backbone():
  spec = RunSpec.from_config(common_flags.load_config('efficientnetv2_b3_isic9'))
  overrides = [dict(phase.model_overrides) for phase in spec.phases]
  assert overrides == [{'train_backbone': False}, {'train_backbone': True}]
  assert spec.phases[1].learning_rate < spec.phases[0].learning_rate
