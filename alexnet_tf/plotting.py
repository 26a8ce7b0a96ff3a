"""training_curves.png: cross-entropy, loss, top-1 and top-5 error per epoch, train and validation.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch), so it
works on headless machines and never touches the state of a caller's own plots. Errors rather
than accuracies are plotted because the paper reports errors (tables 1 and 2).
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alexnet_tf import safe_writes

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
