"""Raw ImageNet (extracted folders, Kaggle CLS-LOC, or the original tars) to TFRecord shards.

The stages, each in its own module: `layouts` finds the images and their labels, `archives`
indexes the original tar files without unpacking them, `images` sniffs/repairs/rejects one
image's bytes, `shards` plans and writes the shards atomically, `manifest` records and verifies
the result, and `main` runs it all with a progress line.
"""
