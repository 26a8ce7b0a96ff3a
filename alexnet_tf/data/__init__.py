"""Records in, batches out: the TFRecord format, the training and evaluation pipelines, augmentation,
what the device finishes, which shards a split reads, the bounded image decoding serving shares."""
