r"""Worker: the Keras side of the epoch row, paper 1's DeepConvNet training written as the
paper's Keras code would be; prints one ROW line with each epoch's times.

  python benchmarks/epoch_keras.py --manual_dir=DOWNLOAD --data_dir=TFDS_DIR

The arrays are skinjax's own (benchmarks/epoch_data.py: the build, the lesion-grouped
split and the balanced train indices the launcher trains on), held in memory as the
paper's code holds them: float32 pixels / 255 (skinjax's normalisation, Keras'
rescale=1/255), the balanced training set as one array of repeated images. Training:
Adam 1e-3, sparse categorical cross-entropy on logits, accuracy, and
`model.fit(flow, epochs=E, validation_data=(x_val, y_val))` with Keras' defaults otherwise
(verbose aside). The augmentation (--augment):
  image_data_generator  `ImageDataGenerator(rotation_range=10, width_shift_range=0.2,
                        height_shift_range=0.2, shear_range=0.2, horizontal_flip=True,
                        vertical_flip=True).flow(x, y, batch_size=64, shuffle=True)`:
                        keras.preprocessing.image's (Keras 2), else the same class Keras 3
                        keeps, unexported, in keras.src.legacy.preprocessing.image
  layers                RandomRotation, RandomTranslation, RandomShear and RandomFlip in a
                        tf.data pipeline (shuffle, batch, map, prefetch)
  auto                  image_data_generator where the class exists, else layers
A callback times each epoch: training from on_epoch_begin to on_test_begin, validation
from there to on_epoch_end. When Keras or TensorFlow cannot be imported, prints one row
saying why and exits 0.
"""

import math
import os
import platform
import time

# Keras reads its backend once, at import.
os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

import epoch_data  # noqa: E402
import protocol  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('manual_dir', None, 'The HAM10000 download (epoch_data.sources).')
flags.DEFINE_string('data_dir', None, 'TFDS data folder the dataset is built in.')
flags.DEFINE_integer('epochs', 2, 'Epochs to train.', lower_bound=1)
flags.DEFINE_enum('augment', 'auto', ['auto', 'image_data_generator', 'layers'],
                  'How the paper\'s augmentation runs (see the module docstring).')
flags.DEFINE_enum('jit_compile', 'auto', ['auto', 'true', 'false'],
                  'XLA for the Keras step (auto: Keras\' default, off on a CPU-only machine).')
flags.DEFINE_integer('seed', 0, 'Seed of Keras\', NumPy\'s and TensorFlow\'s draws.')
flags.mark_flags_as_required(['manual_dir', 'data_dir'])

# Paper 1, Table 1, as ImageDataGenerator takes it (skinjax.augment.PAPER1_CLASSIFICATION).
AUGMENT = dict(rotation_range=10, width_shift_range=0.2, height_shift_range=0.2,
               shear_range=0.2, horizontal_flip=True, vertical_flip=True)
KERAS_DEFAULT_VALIDATION_BATCH = 32  # fit's validation batch when none is given


def image_data_generator():
  """(ImageDataGenerator, its import path), or (None, None) where Keras has none."""
  from keras.preprocessing import image
  if hasattr(image, 'ImageDataGenerator'):
    return image.ImageDataGenerator, 'keras.preprocessing.image.ImageDataGenerator'
  try:
    from keras.src.legacy.preprocessing.image import ImageDataGenerator
  except ImportError:
    return None, None
  return ImageDataGenerator, 'keras.src.legacy.preprocessing.image.ImageDataGenerator'


def generator_flow(x, y, batch_size: int, seed: int):
  generator, where = image_data_generator()
  return generator(**AUGMENT).flow(x, y, batch_size=batch_size, shuffle=True, seed=seed), \
      f'ImageDataGenerator.flow ({where.rsplit(".", 1)[0]})'


def layers_dataset(x, y, batch_size: int, seed: int):
  """The same ranges as Keras 3 preprocessing layers, mapped over batches in tf.data."""
  import keras
  import tensorflow as tf
  layers = keras.layers
  augment = keras.Sequential([
      layers.RandomRotation(AUGMENT['rotation_range'] / 360, fill_mode='nearest', seed=seed),
      layers.RandomTranslation(AUGMENT['height_shift_range'], AUGMENT['width_shift_range'],
                               fill_mode='nearest', seed=seed),
      # ImageDataGenerator's shear_range is in degrees; RandomShear's factor is the shear.
      layers.RandomShear(x_factor=math.tan(math.radians(AUGMENT['shear_range'])),
                         y_factor=0.0, fill_mode='nearest', seed=seed),
      layers.RandomFlip('horizontal_and_vertical', seed=seed),
  ])
  dataset = (tf.data.Dataset.from_tensor_slices((x, y))
             .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
             .batch(batch_size)
             .map(lambda images, labels: (augment(images, training=True), labels),
                  num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))
  return dataset, ('preprocessing layers in tf.data (RandomRotation, RandomTranslation, '
                   'RandomShear, RandomFlip)')


def epoch_timer():
  """A Keras callback recording each epoch's training and validation seconds."""
  import keras

  class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
      super().__init__()
      self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
      self._begin = time.perf_counter()
      self._trained = None

    def on_test_begin(self, logs=None):
      self._trained = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      end = time.perf_counter()
      trained = self._trained or end
      self.epochs.append({'epoch': epoch + 1, 'train_s': trained - self._begin,
                          'validation_s': end - trained,
                          'train_accuracy': (logs or {}).get('accuracy'),
                          'validation_accuracy': (logs or {}).get('val_accuracy')})

  return EpochTimer()


def main(argv):
  del argv
  try:
    import keras
    import tensorflow as tf
  except Exception as error:  # e.g. the main venv or a GPU image without TensorFlow
    protocol.emit({'bench': 'epoch', 'framework': 'keras', 'model': 'deepconvnet',
                   'skipped': f'keras/tensorflow not importable: {type(error).__name__}: '
                              f'{error}'})
    return
  import keras_models
  kind = FLAGS.augment
  if kind == 'auto':
    kind = 'image_data_generator' if image_data_generator()[0] else 'layers'
  elif kind == 'image_data_generator' and image_data_generator()[0] is None:
    raise app.UsageError(f'--augment=image_data_generator: Keras {keras.__version__} has no '
                         'ImageDataGenerator; use --augment=layers')
  spec = epoch_data.run_spec(FLAGS.epochs)
  data, prepare_s = epoch_data.prepare(spec, manual_dir=FLAGS.manual_dir,
                                       data_dir=FLAGS.data_dir)
  scale = np.float32(1 / 255)
  x = data.train.images[data.train_indices].astype(np.float32) * scale
  y = data.train.labels[data.train_indices].astype(np.int32)
  x_val = np.asarray(data.validation.images, np.float32) * scale
  y_val = data.validation.labels.astype(np.int32)
  keras.utils.set_random_seed(FLAGS.seed)
  make = generator_flow if kind == 'image_data_generator' else layers_dataset
  flow, augment_name = make(x, y, spec.batch_size, FLAGS.seed)
  gpus = tf.config.list_physical_devices('GPU')
  jit = {'auto': 'auto', 'true': True, 'false': False}[FLAGS.jit_compile]
  model = keras_models.build('deepconvnet', spec.image_size)
  model.compile(optimizer=keras.optimizers.Adam(spec.phases[0].learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=['accuracy'], jit_compile=jit)
  timer = epoch_timer()
  # The tf.data pipeline shuffles itself (fit's shuffle would only warn that it cannot).
  model.fit(flow, epochs=FLAGS.epochs, validation_data=(x_val, y_val), callbacks=[timer],
            verbose=0, shuffle=kind == 'image_data_generator')
  per_epoch = [dict(e, images=len(x), images_per_s=len(x) / e['train_s'])
               for e in timer.epochs]
  protocol.emit({
      'bench': 'epoch', 'framework': 'keras', 'variant': 'xla' if model.jit_compile else 'tf',
      'model': spec.model, 'image_size': spec.image_size, 'batch_size': spec.batch_size,
      'eval_batch_size': KERAS_DEFAULT_VALIDATION_BATCH, 'augment': augment_name,
      'learning_rate': spec.phases[0].learning_rate,
      'augment_kind': kind, 'dataset': data.dataset_full_name,
      'split_protocol': spec.split_protocol, 'balance': spec.balance,
      'train_examples': len(data.train_indices), 'validation_examples': len(data.validation),
      'per_epoch': per_epoch, 'prepare_s': prepare_s,
      'platform': 'gpu' if gpus else 'cpu',
      'versions': {'keras': keras.__version__, 'tensorflow': tf.__version__,
                   'python': platform.python_version()}})


if __name__ == '__main__':
  app.run(main)
