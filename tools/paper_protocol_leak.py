r"""How many test examples of paper 1's protocol (duplicate, then split 80/20) are copies
of images that are also in its train split, per seed and class.

  python tools/paper_protocol_leak.py --manual_dir=../shared/data/HAM10000 \
      --data_dir=runs/reproduce/cpu/tfds --seeds=0,1,2
"""

import sys

from absl import app, flags
import numpy as np
import tensorflow_datasets as tfds

sys.path.insert(0, __file__.rsplit('/tools/', 1)[0] + '/launch')
import common_flags  # noqa: E402
from skinjax.data import experiment_data  # noqa: E402
from skinjax.train.spec import RunSpec  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('manual_dir', None, 'The HAM10000 download.')
flags.DEFINE_string('data_dir', None, 'TFDS data directory (built there when missing).')
flags.DEFINE_list('seeds', ['0'], 'Seeds of the paper split.')


def main(argv):
  del argv
  tfds.disable_progress_bar()
  spec = RunSpec.from_config(common_flags.load_config('deepconvnet_ham10000')).replace(
      split_protocol='paper')
  for seed in map(int, FLAGS.seeds):
    data = experiment_data.prepare(spec.replace(seed=seed), data_dir=FLAGS.data_dir,
                                   manual_dir=FLAGS.manual_dir)
    in_train = set(data.train.image_ids[data.train_indices].tolist())
    leaked = np.array([image_id in in_train for image_id in data.test.image_ids])
    by_class = ', '.join(
        f'{name} {leaked[data.test.labels == c].mean():.3f}' if (data.test.labels == c).any()
        else f'{name} none' for c, name in enumerate(data.class_names))
    print(f'seed {seed}: {leaked.sum():,} of {len(leaked):,} test copies '
          f'({leaked.mean():.1%}) are images in the train split; by class: {by_class}')


if __name__ == '__main__':
  app.run(main)
