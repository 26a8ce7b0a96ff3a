"""What an export promises operators about the work one request can cause, written as files.

The limits themselves are enforced inside the SavedModel's graph (`serving`, `image_decode`);
these files only make them visible next to the model, and configure TF Serving's batcher so
that excess load is refused quickly instead of queueing without bound:

    EXPORT_BASE/<version>/assets.extra/serving_limits.json   the limits this version enforces
    EXPORT_BASE/batching_parameters.txt   for tensorflow_model_server --enable_batching
                                          --batching_parameters_file=...

TF Serving ignores assets.extra/ except for its warmup file, so the JSON travels with the
version wherever it is copied.
"""

from __future__ import annotations

import dataclasses
import json
import os

LIMITS_FILE = os.path.join("assets.extra", "serving_limits.json")
BATCHING_PARAMETERS_FILE = "batching_parameters.txt"


@dataclasses.dataclass(frozen=True)
class ServingLimits:
    """The bounds of one export, and TF Serving's batching settings for it.

    `max_enqueued_batches` bounds the batcher's queue: once it holds that many batches, a new
    request fails at once with UNAVAILABLE instead of waiting behind minutes of work.
    """

    max_pixels: int
    max_images_per_request: int
    batch_timeout_micros: int = 5_000
    max_enqueued_batches: int = 16
    num_batch_threads: int = 4

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value < (0 if field.name == "batch_timeout_micros" else 1):
                raise ValueError(f"--{field.name}={value}: must be positive")

    @property
    def max_batch_size(self) -> int:
        # TF Serving refuses a request larger than max_batch_size, so one request the graph
        # accepts must also fit one batch.
        return self.max_images_per_request


def write_limits_file(version_dir: str, limits: ServingLimits) -> str:
    """VERSION/assets.extra/serving_limits.json, for operators and `predict`."""
    path = os.path.join(version_dir, LIMITS_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    document = {
        "max_pixels": limits.max_pixels,
        "max_images_per_request": limits.max_images_per_request,
        "enforced_by": "the serving_default signature: InvalidArgument before decoding",
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    return path


def batching_parameters_text(limits: ServingLimits) -> str:
    """TF Serving's BatchingParameters in protobuf text format (session_bundle_config.proto)."""
    return (
        f"max_batch_size {{ value: {limits.max_batch_size} }}\n"
        f"batch_timeout_micros {{ value: {limits.batch_timeout_micros} }}\n"
        f"max_enqueued_batches {{ value: {limits.max_enqueued_batches} }}\n"
        f"num_batch_threads {{ value: {limits.num_batch_threads} }}\n"
        "pad_variable_length_inputs: false\n"
    )
