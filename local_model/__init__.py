"""The SageMaker container `scones-model`, and nothing else: what `docker run scones-model train|serve` runs.

data.py, augment.py          CIFAR-100's bicycles and motorcycles, downloaded or staged; augmentation
model.py, classifier.py      the ResNet, and a trained model's files (weights, model.json)
train.py                     the training entrypoint (/opt/ml/input -> /opt/ml/model), threshold.py and
                             baseline.py for what training records beside the weights
artifact.py                  model.tar.gz without torch (pack, safe unpack, class names)
inference.py, serve.py       the inference functions and the HTTP server (/ping, /invocations), with
                             http_protocol.py (slow-client deadlines) and settings.py (its environment)
variants.py                  the endpoint's production and shadow variants (what SageMaker routes; the
                             server does it locally from SCONES_VARIANTS_FILE)
capture.py, capture_reader.py  Model Monitor data capture: writing records; reading them back
progress.py                  progress bars for a terminal or a log
Dockerfile, bin/             the image and its `train` / `serve` entry points"""
