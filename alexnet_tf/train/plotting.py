"""The run's pictures: training_curves.png (cross-entropy, loss, top-1 and top-5 error per
epoch, train and validation) and conv1_filters.png (conv1's kernels as in the paper's figure 3).

The curves are drawn with matplotlib's Agg canvas directly (no pyplot, no global backend
switch), so it works on headless machines and never touches the state of a caller's own plots.
Errors rather than accuracies are plotted because the paper reports errors (tables 1 and 2).
The filters are a plain pixel mosaic (PIL), one block per weight, so nothing is smoothed.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alexnet_tf.train import safe_writes

# (title, training key, validation key, transform of the logged value)
_PANELS = (
    ("cross-entropy", "cross_entropy", "val_cross_entropy", lambda value: value),
    ("loss (cross-entropy + L2 term)", "loss", "val_loss", lambda value: value),
    ("top-1 error", "top1_accuracy", "val_top1_accuracy", lambda value: 1.0 - value),
    ("top-5 error", "top5_accuracy", "val_top5_accuracy", lambda value: 1.0 - value),
)


def plot_training_curves(history: list[dict], path: str) -> None:
    """Writes the curves of `history` (one dict per epoch, as in history.json) to `path`."""
    figure = Figure(figsize=(17, 4), dpi=100)
    FigureCanvasAgg(figure)
    for index, (title, train_key, validation_key, transform) in enumerate(_PANELS):
        axes = figure.add_subplot(1, len(_PANELS), index + 1)
        for key, label in ((train_key, "train"), (validation_key, "validation")):
            points = [(r["epoch"], transform(r[key])) for r in history if key in r]
            if points:
                epochs, values = zip(*points)
                axes.plot(epochs, values, marker="o", markersize=3, label=label)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    safe_writes.write_bytes(path, buffer.getvalue())


CONV1_FILTERS_FILENAME = "conv1_filters.png"
_MOSAIC_COLUMNS = 16  # figure 3 shows 48 kernels per GPU as 3 rows of 16
_MOSAIC_ZOOM = 4  # each weight becomes a 4x4 block: an 11x11 kernel is a 44x44 tile
_MOSAIC_GAP = 2
_TOWER_GAP = 10  # extra space between the two GPUs' kernels, as in figure 3
_MOSAIC_BACKGROUND = 255


def conv1_towers(network) -> int:
    """2 for the paper's network (conv1's kernels were learned on two GPUs), else 1."""
    return 2 if network.name == "alexnet" else 1


def mosaic_geometry(kernels: int, towers: int = 1) -> tuple[int, int, int]:
    """(rows per tower, image height, image width) of the mosaic of `kernels` 11x11 kernels."""
    per_tower = kernels // towers
    rows = -(-per_tower // _MOSAIC_COLUMNS)
    tile = 11 * _MOSAIC_ZOOM
    width = _MOSAIC_COLUMNS * tile + (_MOSAIC_COLUMNS + 1) * _MOSAIC_GAP
    height = towers * rows * tile + (towers * rows + 1) * _MOSAIC_GAP + (towers - 1) * _TOWER_GAP
    return rows, height, width


def conv1_mosaic(kernel: np.ndarray, towers: int = 1) -> np.ndarray:
    """uint8 [H, W, 3]: conv1's kernels [h, w, 3, n] as RGB tiles, as in the paper's figure 3.

    Each kernel is stretched to 0..255 on its own (min to max), since what the figure shows
    is each filter's pattern, not the scale of its weights; with `towers`=2 the first half
    of the kernels (GPU 1) fills the top rows and the second half the rows below a gap.
    """
    kernel = np.asarray(kernel, np.float32)
    size, _, channels, count = kernel.shape
    if channels != 3 or count % towers:
        raise ValueError(f"conv1 kernel of shape {kernel.shape} is not RGB in {towers} towers")
    rows, height, width = mosaic_geometry(count, towers)
    tile = size * _MOSAIC_ZOOM
    mosaic = np.full((height, width, 3), _MOSAIC_BACKGROUND, np.uint8)
    per_tower = count // towers
    for index in range(count):
        tower, position = divmod(index, per_tower)
        row, column = divmod(position, _MOSAIC_COLUMNS)
        weights = kernel[..., index]
        low, high = float(weights.min()), float(weights.max())
        scaled = (weights - low) / (high - low) if high > low else np.full_like(weights, 0.5)
        pixels = np.round(255.0 * scaled).astype(np.uint8)
        pixels = pixels.repeat(_MOSAIC_ZOOM, axis=0).repeat(_MOSAIC_ZOOM, axis=1)
        top = _MOSAIC_GAP + (tower * rows + row) * (tile + _MOSAIC_GAP) + tower * _TOWER_GAP
        left = _MOSAIC_GAP + column * (tile + _MOSAIC_GAP)
        mosaic[top : top + tile, left : left + tile] = pixels
    return mosaic


def plot_conv1_filters(network, path: str) -> None:
    """Writes the mosaic of `network`'s conv1 kernels to `path` as a PNG."""
    from PIL import Image

    kernel = network.get_layer("conv1").get_weights()[0]
    buffer = io.BytesIO()
    Image.fromarray(conv1_mosaic(kernel, conv1_towers(network))).save(buffer, format="PNG")
    safe_writes.write_bytes(path, buffer.getvalue())
