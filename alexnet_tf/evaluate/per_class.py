"""Top-1 accuracy of each class, for `evaluate --per_class`: which of your classes the model
confuses is what a mean over classes hides."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alexnet_tf import imagenet


class PerClassTop1:
    """Counts, per true class, the images scored and those whose top-1 class is right."""

    def __init__(self, num_classes: int):
        self.images = np.zeros(num_classes, np.int64)
        self.correct = np.zeros(num_classes, np.int64)

    def update(self, labels: np.ndarray, probabilities: np.ndarray) -> None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        predicted = np.argmax(np.asarray(probabilities), axis=-1)
        np.add.at(self.images, labels, 1)
        np.add.at(self.correct, labels[predicted == labels], 1)

    def rows(self, names: Sequence[str]) -> list[dict]:
        """One row per class, in label order; classes without images have accuracy None."""
        return [
            {"label": index, "name": name, "images": int(images),
             "top1_accuracy": float(correct / images) if images else None}
            for index, (name, images, correct) in enumerate(zip(names, self.images, self.correct))
        ]


def format_rows(rows: Sequence[dict]) -> str:
    lines = ["top-1 per class:", "  label  images   top-1  name"]
    for row in rows:
        accuracy = "     -" if row["top1_accuracy"] is None else f"{row['top1_accuracy']:.4f}"
        name = row["name"]
        if imagenet.class_name_for(name) != name:  # a synset: add ImageNet's words
            name = f"{name}  {imagenet.class_name_for(name)}"
        lines.append(f"{row['label']:7d}  {row['images']:6d}  {accuracy}  {name}")
    return "\n".join(lines)
