r"""Training images/s of paper 2's classifier (EfficientNetV2-B3 + head) at 300x300.

  python benchmarks/b3_cpu_step.py --batch_size=8 --steps=5

Times `--steps` jitted train steps (skinjax.train.parallel 'jit' wrapper, Keras Adam,
9 classes) after `--warmup` steps that include compilation, on random images. With
--train_backbone=false it times phase 1 (frozen backbone) instead of fine-tuning.
"""

import time

from absl import app, flags
import jax
import numpy as np

from skinjax.models import create_model
from skinjax.train.parallel import make_parallel
from skinjax.train.state import TrainState, init_variables, keras_adam
from skinjax.train.tasks import ClassificationTask
from skinjax.train.transfer import transfer_optimizer

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'efficientnetv2_b3_skin', 'Registry name of the classifier.')
flags.DEFINE_integer('image_size', 300, 'Image side.')
flags.DEFINE_integer('batch_size', 8, 'Global batch size.')
flags.DEFINE_integer('steps', 5, 'Timed steps.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps first (the first one compiles).')
flags.DEFINE_bool('train_backbone', True, 'False: phase 1, the backbone frozen.')


def main(argv):
  del argv
  num_classes = 9
  model = create_model(FLAGS.model, num_classes=num_classes,
                       train_backbone=FLAGS.train_backbone)
  task = ClassificationTask(num_classes)
  shape = (FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size, 3)
  start = time.time()
  variables = init_variables(jax.random.key(0), model, (1,) + shape[1:])
  tx = transfer_optimizer(model, keras_adam(1e-4))
  state = TrainState(step=np.zeros((), np.int32), params=variables['params'],
                     batch_stats=variables['batch_stats'], opt_state=tx.init(variables['params']),
                     tx=tx)
  parallel = make_parallel('jit', model, task)
  state = parallel.replicate(state)
  metrics = parallel.replicate(task.empty_metrics())
  rng = np.random.default_rng(0)
  batch = parallel.shard_batch({
      'image': rng.uniform(0, 255, shape).astype(np.float32),
      'label': rng.integers(0, num_classes, FLAGS.batch_size).astype(np.int32)})
  key = jax.random.key(1)
  print(f'init {time.time() - start:.1f} s')
  for _ in range(FLAGS.warmup):
    start = time.time()
    state, metrics = jax.block_until_ready(parallel.train_step(state, metrics, batch, key))
    print(f'warm-up step {time.time() - start:.1f} s')
  start = time.time()
  for _ in range(FLAGS.steps):
    state, metrics = parallel.train_step(state, metrics, batch, key)
  jax.block_until_ready((state, metrics))
  seconds = time.time() - start
  print(f'{FLAGS.model} {FLAGS.image_size}x{FLAGS.image_size}, batch {FLAGS.batch_size}, '
        f'{"fine-tuning" if FLAGS.train_backbone else "frozen backbone"} on '
        f'{jax.device_count()} {jax.devices()[0].platform} device(s): '
        f'{FLAGS.steps * FLAGS.batch_size / seconds:.2f} images/s '
        f'({seconds / FLAGS.steps:.2f} s/step)')


if __name__ == '__main__':
  app.run(main)
