r"""Convert a Keras EfficientNetV2 B0..B3 weights file into an orbax checkpoint.

  python launch/convert_weights.py --keras_weights=efficientnetv2-b3_notop.h5 \
      --variant=b3 --include_top=false --output=runs/weights/efficientnetv2_b3_notop

Reads .keras, .weights.h5 and legacy .h5 files (the ImageNet files Keras downloads are
legacy .h5). The output directory holds the variables and the config a later
`--init_from` reads with skinjax.convert.keras_efficientnet_v2.load_converted.
"""

import os

from absl import app, flags, logging

import jax_startup
from skinjax.convert import keras_efficientnet_v2 as converter

FLAGS = flags.FLAGS
flags.DEFINE_string('keras_weights', None, 'Keras .keras, .weights.h5 or .h5 file.')
flags.DEFINE_enum('variant', 'b3', converter.VARIANTS, 'EfficientNetV2 variant of the file.')
flags.DEFINE_bool('include_top', True, 'Convert the 1000-class `predictions` top too.')
flags.DEFINE_bool('skip_unexpected', False,
                  'Leave out layers the model lacks (e.g. a top with --include_top=false) '
                  'instead of failing; they are listed in the config.')
flags.DEFINE_string('output', None, 'Checkpoint directory to create.')
flags.mark_flags_as_required(['keras_weights', 'output'])


def main(argv):
  del argv
  if not os.path.exists(FLAGS.keras_weights):
    raise app.UsageError(f'--keras_weights: no file at {FLAGS.keras_weights}')
  if os.path.exists(FLAGS.output) and os.listdir(FLAGS.output):
    raise app.UsageError(f'--output: {FLAGS.output} exists and is not empty')
  jax_startup.start()
  variables, config = converter.convert(FLAGS.keras_weights, FLAGS.variant, FLAGS.include_top,
                                        skip_unexpected=FLAGS.skip_unexpected)
  converter.save_converted(FLAGS.output, variables, config)
  report = config['report']
  logging.info('converted %d layers (%d arrays) of %s into %s', report['converted_layers'],
               report['converted_arrays'], config['model'], FLAGS.output)
  for line in report['skipped']:
    logging.warning('skipped: %s', line)
  print(f"{config['model']}: {report['converted_arrays']} arrays -> {FLAGS.output}")


if __name__ == '__main__':
  app.run(main)
