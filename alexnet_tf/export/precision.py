"""The precision a model is served in, chosen at export and independent of how it was trained.

A `.keras` file keeps each layer's training dtype policy: a model trained under
`mixed_float16` loads with float16 convolutions. CPUs have no fast float16 convolution (oneDNN
falls back to reference kernels: 13.26 s for a batch of 8 against 0.157 s in float32, 84x, in
TF Serving's CPU image), and a GPU server may lack the tensor cores the policy was chosen for.
So the exporter rebuilds the model in the precision asked for and copies the weights over:

* "float32": every layer computes and stores its weights in float32. Runs everywhere; the
  default, because the machine that serves is often not the one that trained.
* "bfloat16": every layer but the logits computes in bfloat16 and stores its weights in
  bfloat16 (policy "bfloat16", not "mixed_bfloat16"), which halves the 233 MB of fc weights a
  batch-1 request reads. Fast on CPUs with AMX (Sapphire Rapids and later) and on GPUs with
  bfloat16 tensor cores; slower than float32 where the CPU has neither (see
  benchmarks/serving.py). The logits layer stays float32, as `build_alexnet` makes it.
"""

from __future__ import annotations

import keras

PRECISIONS = ("float32", "bfloat16")


def layer_policies(model: keras.Model, precision: str) -> dict[str, str]:
    """The dtype policy name each layer gets when `model` is served in `precision`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    output_layers = set(model.output_names)
    return {
        layer.name: "float32" if precision == "float32" or layer.name in output_layers else precision
        for layer in model.layers
    }


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """A copy of `model` that computes in `precision`, with the same weights (cast).

    Returns `model` itself when every layer already has the policy asked for.
    """
    policies = layer_policies(model, precision)
    if all(layer.dtype_policy.name == policies[layer.name] for layer in model.layers):
        return model

    def rebuild(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        config["dtype"] = keras.DTypePolicy(policies[layer.name])
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild)
    for source, target in zip(model.layers, copy.layers):
        target.set_weights(source.get_weights())
    return copy


__all__ = ["PRECISIONS", "layer_policies", "with_precision"]
