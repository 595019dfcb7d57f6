"""Paper 1, Tables 5-6's comparison networks on HAM10000, trained as its DeepConvNet is
(deepconvnet_ham10000.py: Adam 1e-3, batch 64, 20 epochs, paper 1's augmentation and its
duplication of the train split), each as keras.applications builds it under paper 2's head
(the paper names no head for them). Choose the network and its input:
  --config.model=vgg16_skin       --config.image_size=32
  --config.model=resnet50_skin    --config.image_size=32
  --config.model=inceptionv3_skin --config.image_size=75
  --config.model=xception_skin    --config.image_size=71
These are Keras' smallest inputs for each (paper 1's 28x28 is below all of them; a size
below a network's smallest is refused, naming it). The images are resized from the
downloads to that size, not from paper 1's 28x28 copies, so they carry somewhat more detail
than the paper's. They enter at 0..255: each network applies its own Keras
preprocess_input inside. No ImageNet weights reach this project; with a converted file
(launch/convert_weights.py --model=vgg16 ...), --config.init_from=<its folder> starts
from it.
"""

from skinjax.train import spec


def get_config():
  config = spec.base_config()
  config.model = 'resnet50_skin'
  config.task = 'classification'
  config.dataset = 'ham10000'
  config.dataset_config = 'images'
  config.image_size = 32
  config.balance = 'paper1'
  config.augment = 'paper1_classification'
  config.normalization.mean = (0.0, 0.0, 0.0)
  config.normalization.std = (1.0, 1.0, 1.0)
  config.batch_size = 64
  config.eval_batch_size = 256
  config.phases = [spec.phase('train', epochs=20, learning_rate=1e-3)]
  config.best_metric = 'accuracy'
  return config
