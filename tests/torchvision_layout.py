"""torchvision's `alexnet`, written out in plain torch (torchvision is not installed here).

The module layout is torchvision/models/alexnet.py's, so `state_dict()` has exactly its keys
(features.0/3/6/8/10, classifier.1/4/6) and shapes. Weights are random: He-normal, which keeps
the signal's scale through the layers as a trained network does, optionally calibrated so that
every layer's output has unit RMS on given images (a trained network's features are O(1); a
new fc8 then learns at the learning rates that work for real pretrained weights).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tests.torchvision_transform import torchvision_eval_pixels

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def random_alexnet(seed: int = 0, num_classes: int = 1000, calibrate_on=None) -> AlexNet:
    """He-normal kernels, small random biases; `calibrate_on` (NCHW, normalised) rescales
    each layer so its output has unit RMS on those images."""
    torch.manual_seed(seed)
    network = AlexNet(num_classes)
    layers = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.normal_(layer.bias, 0.0, 0.1)
    network.eval()
    if calibrate_on is not None:
        for layer in layers:
            outputs = []
            hook = layer.register_forward_hook(lambda module, inputs, output: outputs.append(output))
            with torch.no_grad():
                network(calibrate_on)
            hook.remove()
            rms = float(outputs[0].pow(2).mean().sqrt())
            with torch.no_grad():
                layer.weight /= rms
                layer.bias /= rms
    return network


def normalise(pixels: np.ndarray) -> torch.Tensor:
    """uint8 or 0..255 float NHWC -> torchvision's normalised NCHW input."""
    scaled = (np.asarray(pixels, np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(0, 3, 1, 2)))


def torchvision_eval_transform(image_bytes: bytes) -> torch.Tensor:
    """torchvision's ImageNet eval transform: the PIL steps, then ToTensor and Normalize."""
    return normalise(torchvision_eval_pixels(image_bytes)[np.newaxis])
