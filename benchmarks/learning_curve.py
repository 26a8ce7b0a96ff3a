"""Ours (Keras) against a plain-PyTorch AlexNet, learning the same photos side by side.

Both networks are the paper variant (two groups in conv2/4/5, LRN after conv1 and conv2),
start from the SAME weights (drawn once in Keras, copied into torch), and are fed the SAME
batches: one numpy array of random crops and mirrors per epoch, in one order, so the only
differences left are the frameworks' arithmetic and dropout masks. The recipe is the
trainer's: SGD with momentum, weight decay as an L2 term on the kernels only (the biases
are not decayed), one learning-rate schedule stepped per batch. Ours trains as
alexnet_tf.train does: its training step (train/steps.py) under `model.fit`, fed the uint8
crops by tf.data and finishing them to float inside the step; torch gets the same uint8
crops and makes the same float32 input inside its own timed step. The two train in turns of
--eval_every steps, so a load spike from other users of the machine falls on both alike.

    python benchmarks/learning_curve.py --data_dir=RECORDS --image_size=67 --epochs=10 \
        --initialization=he --learning_rate=0.003 --schedule=cosine --png=curves.png

--data_dir takes records written by tools/build_tfrecords.py; --image_dir takes folders
train/<class>/*.jpg and val/<class>/*.jpg. Images are scaled to --stored_size on their
shorter side (default image_size * 256 / 227, the paper's crop-to-image ratio), the central
square kept, and held in memory. No PCA lighting, no ten-crop: validation is the centre
crop. Both run under glibc settings that spare PyTorch page faults on every step
(benchmarks/malloc_settings.py; --notuned_malloc for glibc's defaults, under which PyTorch
ran at half its speed). --initialization=caffe is bvlc_alexnet's fillers (fc6/fc7 std
0.005, biases 0.1) and --lrn=caffe its LRN (alpha divided by n = 5, k = 1).

Prints both curves (validation top-1 after every --eval_every steps), the first step at
which each exceeds --chance_margin over chance, and, last, the time to --target top-1 and
the final top-1 of each with their ratios.
"""

from __future__ import annotations

import glob
import io
import math
import os
import signal
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import malloc_settings  # noqa: E402  (benchmarks/, the script's own folder)

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Records from tools/build_tfrecords.py.")
flags.DEFINE_string("image_dir", None, "Folders train/<class>/* and val/<class>/* of images.")
flags.DEFINE_integer("image_size", 67, "Crop size fed to both networks.", lower_bound=67)
flags.DEFINE_integer("stored_size", None, "Shorter side the images are held at; default "
                     "image_size * 256 / 227.")
flags.DEFINE_integer("images_per_class", None, "Train on only this many images per class.")
flags.DEFINE_integer("val_images", None, "Score on only this many validation images.")
flags.DEFINE_integer("epochs", 2, "Epochs for each framework.", lower_bound=1)
flags.DEFINE_integer("max_steps", None, "Stop both after this many steps (the schedule "
                     "ends there too).")
flags.DEFINE_integer("stop_after_steps", None, "Stop both after this many steps of the "
                     "schedule of --epochs (a shorter look at a long run's start).")
flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
flags.DEFINE_float("learning_rate", 0.01, "Peak learning rate.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("weight_decay", 5e-4, "Gradient wd * w on kernels (L2 term wd/2 sum w^2).")
flags.DEFINE_float("dropout", 0.5, "Dropout after fc6 and fc7.")
flags.DEFINE_enum("schedule", "constant", ["constant", "cosine"], "Learning-rate schedule, "
                  "per step (cosine: to 0 at the last step).")
flags.DEFINE_integer("warmup_steps", 0, "Linear warm-up steps before the schedule.")
flags.DEFINE_enum("initialization", "paper", ["paper", "caffe", "he"],
                  "paper: N(0, 0.01), biases 1 in conv2/4/5, fc6, fc7; caffe: bvlc_alexnet "
                  "(fc6/fc7 std 0.005, those biases 0.1); he: the package's He-normal.")
flags.DEFINE_enum("lrn", "paper", ["paper", "caffe"], "paper: k=2, alpha=1e-4 as printed; "
                  "caffe: Caffe's LRN, alpha/n with n=5, and k=1 (Caffe's default).")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "Both frameworks.")
flags.DEFINE_bool("torch_channels_last", False, "Run torch in channels_last memory format "
                  "(its faster CPU setting with bfloat16 in train_throughput.py).")
flags.DEFINE_list("frameworks", ["ours", "torch"], "Which to train: ours, torch.")
flags.DEFINE_integer("eval_every", None, "Validate every this many steps (default: per epoch).")
flags.DEFINE_float("target", 0.5, "Top-1 whose time to reach is compared.")
flags.DEFINE_float("chance_margin", 0.05, "'Left chance' = top-1 above chance + this.")
flags.DEFINE_integer("seed", 0, "Weights, crops and data order.")
flags.DEFINE_integer("threads", None, "Threads for each framework (default: all cores).")
flags.DEFINE_bool("tuned_malloc", True, "Run under benchmarks/malloc_settings.py's glibc "
                  "settings (PyTorch trains about 2x faster on a CPU under them; ours alike).")
flags.DEFINE_string("png", None, "Write both validation curves into this PNG.")
flags.DEFINE_string("cache_dir", None, "Keep the decoded arrays here (an .npz per split and "
                    "size) so later runs skip the decoding.")
flags.mark_flags_as_mutual_exclusive(["data_dir", "image_dir"], required=True)

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def load_split(split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 [N, S, S, 3] central squares at the stored size, int labels, class names."""
    from PIL import Image

    size = FLAGS.stored_size or round(FLAGS.image_size * 256 / 227)

    def square(data: bytes) -> np.ndarray:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        scale = size / min(image.size)
        width = max(size, round(image.width * scale))
        height = max(size, round(image.height * scale))
        image = image.resize((width, height), Image.BILINEAR)
        left, top = (width - size) // 2, (height - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)), np.uint8)

    source = os.path.abspath(FLAGS.data_dir or FLAGS.image_dir)
    cache = None
    if FLAGS.cache_dir:
        key = f"{source.strip(os.sep).replace(os.sep, '_')}-{split}-{size}.npz"
        cache = os.path.join(FLAGS.cache_dir, key)
        if os.path.exists(cache):
            with np.load(cache) as saved:
                return saved["images"], saved["labels"], list(saved["names"])
    if FLAGS.data_dir:
        import tensorflow as tf

        from alexnet_tf.data import records
        prefix = "train" if split == "train" else "validation"
        files = sorted(glob.glob(os.path.join(FLAGS.data_dir, prefix + "-*")))
        if not files:
            raise app.UsageError(f"--data_dir={FLAGS.data_dir}: no {prefix}-* shards")
        with open(os.path.join(FLAGS.data_dir, "labels.txt")) as handle:
            names = [line.strip() for line in handle if line.strip()]
        spec = {records.ENCODED: tf.io.FixedLenFeature([], tf.string),
                records.LABEL: tf.io.FixedLenFeature([], tf.int64)}
        pairs = [tf.io.parse_single_example(raw, spec) for raw in tf.data.TFRecordDataset(files)]
        data = [(p[records.ENCODED].numpy(), int(p[records.LABEL].numpy())) for p in pairs]
    else:
        root = os.path.join(FLAGS.image_dir, "train" if split == "train" else "val")
        names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        data = []
        for label, name in enumerate(names):
            for path in sorted(glob.glob(os.path.join(root, name, "*"))):
                with open(path, "rb") as handle:
                    data.append((handle.read(), label))
    images = np.stack([square(encoded) for encoded, _ in data])
    labels = np.array([label for _, label in data], np.int64)
    if cache:
        os.makedirs(FLAGS.cache_dir, exist_ok=True)
        np.savez(cache, images=images, labels=labels, names=np.array(names))
    return images, labels, names


def subsample(images, labels, per_class: int, rng) -> tuple[np.ndarray, np.ndarray]:
    keep = np.concatenate([
        rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)
    ])
    return images[keep], labels[keep]


def random_crops(images: np.ndarray, order: np.ndarray, size: int, rng) -> np.ndarray:
    """One random size x size crop and a coin-flip mirror of images[order[i]] for every i.

    Indexing inside the loop spares the full copy `images[order]` would make (1.9 GB at 256px).
    """
    n, stored = len(order), images.shape[1]
    tops = rng.integers(0, stored - size + 1, n)
    lefts = rng.integers(0, stored - size + 1, n)
    flips = rng.random(n) < 0.5
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        crop = images[order[i], tops[i]:tops[i] + size, lefts[i]:lefts[i] + size]
        out[i] = crop[:, ::-1] if flips[i] else crop
    return out


def centre_crops(images: np.ndarray, size: int) -> np.ndarray:
    offset = (images.shape[1] - size) // 2
    return images[:, offset:offset + size, offset:offset + size]


def to_float(batch: np.ndarray) -> np.ndarray:
    from alexnet_tf import imagenet
    return batch.astype(np.float32) - imagenet.RGB_MEAN


class PerStepRate:
    """The learning rate of each step: linear warm-up, then constant or cosine to 0.

    Ours reads it inside the trainer's step (it plays the part of schedules.LinearWarmup in
    steps.TrainingModel, which sets the optimizer's rate from `rate(steps_taken)` before every
    update); torch reads the same values, computed once, from `table()`.
    """

    def __init__(self, total_steps: int):
        self.total_steps = total_steps

    def rate(self, steps_taken):
        import tensorflow as tf
        step = tf.cast(steps_taken, tf.float32)
        peak = FLAGS.learning_rate
        if FLAGS.schedule == "cosine":
            progress = (step - FLAGS.warmup_steps) / max(1, self.total_steps - FLAGS.warmup_steps)
            rate = peak * 0.5 * (1.0 + tf.cos(math.pi * tf.minimum(1.0, progress)))
        else:
            rate = tf.constant(peak, tf.float32)
        if FLAGS.warmup_steps:
            rate = tf.where(step < FLAGS.warmup_steps, peak * (step + 1) / FLAGS.warmup_steps,
                            rate)
        return rate

    def table(self) -> np.ndarray:
        """rate(step) for every step of the run, in float32 as ours reads it."""
        import tensorflow as tf
        return self.rate(tf.range(self.total_steps)).numpy()


def build_ours(num_classes: int, schedule: PerStepRate):
    """The package's model, optimizer and training step, compiled as alexnet_tf.train does."""
    import keras

    from alexnet_tf.model import alexnet as model_lib
    from alexnet_tf.model.layers import LocalResponseNormalization
    from alexnet_tf.train import steps

    if FLAGS.precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(FLAGS.seed)
    network = model_lib.build_alexnet(
        num_classes, "paper", FLAGS.image_size, FLAGS.dropout,
        FLAGS.initialization, FLAGS.weight_decay / 2,
    )
    if FLAGS.lrn == "caffe":
        def caffe_lrn(layer):
            if isinstance(layer, LocalResponseNormalization):
                config = layer.get_config()
                config.update(alpha=layer.alpha / (2 * layer.depth_radius + 1), bias=1.0)
                return LocalResponseNormalization.from_config(config)
            return layer.__class__.from_config(layer.get_config())
        rebuilt = keras.models.clone_model(network, clone_function=caffe_lrn)
        rebuilt.set_weights(network.get_weights())
        network = rebuilt
    # The trainer's step (uint8 crops finished inside it) and optimizer: Keras SGD,
    # v <- m v - lr g; w <- w + v, g including wd * w; the rate set inside every step.
    network = steps.TrainingModel(network, warmup=schedule)
    network.compile(
        optimizer=keras.optimizers.SGD(FLAGS.learning_rate, momentum=FLAGS.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # Keras's loss holds the L2 term too; report the cross-entropy, as torch's is.
        weighted_metrics=[keras.metrics.SparseCategoricalCrossentropy(
            from_logits=True, name="cross_entropy")],
        jit_compile=False)
    return network


def build_torch(ours, num_classes: int):
    """The same network in plain torch, holding a copy of `ours`'s initial weights."""
    import torch
    from torch import nn

    from alexnet_tf.model import alexnet as model_lib
    from alexnet_tf.model.layers import LocalResponseNormalization

    lrn = [layer for layer in ours.layers if isinstance(layer, LocalResponseNormalization)][0]
    size = 2 * lrn.depth_radius + 1
    # torch's LocalResponseNorm divides alpha by size: undo that to get the same formula.
    make_lrn = lambda: nn.LocalResponseNorm(size, alpha=lrn.alpha * size, beta=lrn.beta,  # noqa
                                            k=lrn.bias)
    pixel_scale = 1.0 / model_lib.PIXEL_STDDEV if FLAGS.initialization == "he" else 1.0
    pool5 = ours.get_layer("pool5").output.shape[1:]

    class PaperAlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), make_lrn(), nn.MaxPool2d(3, 2),
                nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), make_lrn(),
                nn.MaxPool2d(3, 2),
                nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
                nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
                nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            )
            self.classifier = nn.Sequential(
                nn.Linear(int(np.prod(pool5)), 4096), nn.ReLU(), nn.Dropout(FLAGS.dropout),
                nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(FLAGS.dropout),
                nn.Linear(4096, num_classes),
            )

        def forward(self, x):
            x = self.features(x * pixel_scale)
            return self.classifier(torch.flatten(x, 1))

    network = PaperAlexNet()
    torch_layers = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for name, module in zip(LAYERS, torch_layers):
            kernel, bias = ours.get_layer(name).get_weights()
            if kernel.ndim == 4:
                kernel = kernel.transpose(3, 2, 0, 1)
            else:
                if name == "fc6":  # Keras flattens H, W, C; torch C, H, W.
                    h, w, c = pool5
                    kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3)
                    kernel = kernel.reshape(h * w * c, -1)
                kernel = kernel.T
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            module.bias.copy_(torch.from_numpy(bias))
    if FLAGS.torch_channels_last:
        network = network.to(memory_format=torch.channels_last)
    kernels = [m.weight for m in torch_layers]
    biases = [m.bias for m in torch_layers]
    optimizer = torch.optim.SGD(
        [{"params": kernels, "weight_decay": FLAGS.weight_decay},
         {"params": biases, "weight_decay": 0.0}],
        lr=FLAGS.learning_rate, momentum=FLAGS.momentum,
    )
    return network, optimizer


class Runner:
    """One framework's training state: steps taken, seconds spent training, its curve.

    `train_fn(crops, labels, first_step, end_step)` trains on uint8 crops, one batch per step
    (each framework turns them into float input itself, inside the timed call), and returns the
    mean cross-entropy of those steps, NaN once the run diverged.
    """

    def __init__(self, name, train_fn, eval_fn):
        self.name, self.train_fn, self.eval_fn = name, train_fn, eval_fn
        self.train_seconds, self.curve, self.losses = 0.0, [], []


def make_runners(num_classes: int, val_x: np.ndarray, val_y: np.ndarray,
                 total_steps: int) -> list[Runner]:
    import tensorflow as tf

    from alexnet_tf import imagenet

    runners = []
    schedule = PerStepRate(total_steps)
    ours = build_ours(num_classes, schedule)
    # Validation crops stay uint8 and become float a batch at a time: float32 copies of all
    # 3,925 at 227px (2.4 GB, and torch's NCHW one as much again) ran a 24 GiB machine out of
    # memory under malloc_settings' no-trim allocator.
    eval_batch = 256

    def ours_train(crops, labels, first_step, end_step):
        """alexnet_tf.train's way: a tf.data pipeline of (uint8 crops, offsets) into fit."""
        if int(ours.optimizer.iterations.numpy()) != first_step:
            raise RuntimeError(f"ours is at step {int(ours.optimizer.iterations.numpy())}, "
                               f"asked to start at {first_step}")
        size, steps = FLAGS.batch_size, end_step - first_step
        # Sliced a batch at a time, not an image at a time: per-image slices and a batch op
        # halved the images/s at 227x227 (46 against 85). Not from_generator either: it
        # switches glibc's trimming back on for the process, and its chunks stalled for
        # 10-20 s with no CPU in use (2026-12-04).
        batched_crops = crops[:steps * size].reshape(steps, size, *crops.shape[1:])
        offsets = np.tile(-imagenet.RGB_MEAN, (steps, size, 1)).astype(np.float32)
        batched_labels = labels[:steps * size].astype(np.int32).reshape(steps, size)
        dataset = tf.data.Dataset.from_tensor_slices(((batched_crops, offsets), batched_labels))
        history = ours.fit(dataset.prefetch(2), epochs=1, steps_per_epoch=steps,
                           verbose=0, shuffle=False)
        return float(history.history["cross_entropy"][-1])

    def ours_eval():
        predictions = np.concatenate([
            np.argmax(ours.predict_on_batch(to_float(val_x[i:i + eval_batch])), 1)
            for i in range(0, len(val_y), eval_batch)])
        return float(np.mean(predictions == val_y))

    torch_network, torch_optimizer = build_torch(ours, num_classes)
    if "ours" in FLAGS.frameworks:
        runners.append(Runner("ours", ours_train, ours_eval))
    if "torch" in FLAGS.frameworks:
        import torch
        loss_fn = torch.nn.CrossEntropyLoss()
        autocast = FLAGS.precision == "bfloat16"

        def torch_input(batch: np.ndarray):
            return torch.from_numpy(to_float(batch)).permute(0, 3, 1, 2).contiguous()
        torch_mean = torch.from_numpy(imagenet.RGB_MEAN).view(1, 3, 1, 1)

        def torch_step(x, y, lr):
            for group in torch_optimizer.param_groups:
                group["lr"] = lr
            torch_network.train()
            batch = torch.from_numpy(x).permute(0, 3, 1, 2)  # NHWC memory seen as NCHW
            if not FLAGS.torch_channels_last:
                batch = batch.contiguous()
            inputs = batch.float() - torch_mean  # the same float32 subtraction as to_float
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(torch_network(inputs).float(), torch.from_numpy(y))
            torch_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch_optimizer.step()
            return float(loss.detach())

        rates = schedule.table()

        def torch_train(crops, labels, first_step, end_step):
            losses = []
            for s in range(first_step, end_step):
                at = (s - first_step) * FLAGS.batch_size
                losses.append(torch_step(crops[at:at + FLAGS.batch_size],
                                         labels[at:at + FLAGS.batch_size],
                                         float(rates[s])))
                if not math.isfinite(losses[-1]):
                    return math.nan
            return float(np.mean(losses))

        def torch_eval():
            torch_network.eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                predictions = torch.cat([
                    torch_network(torch_input(val_x[i:i + eval_batch])).float().argmax(1)
                    for i in range(0, len(val_y), eval_batch)
                ]).numpy()
            return float(np.mean(predictions == val_y))

        runners.append(Runner("torch", torch_train, torch_eval))
        # The copy is right only if both give the same logits from the same weights.
        torch_network.eval()
        with torch.no_grad():
            torch_logits = torch_network(torch_input(val_x[:16])).float().numpy()
        ours_logits = np.asarray(ours.predict_on_batch(to_float(val_x[:16])), np.float32)
        print(f"initial logits, ours vs torch: max difference "
              f"{np.max(np.abs(ours_logits - torch_logits)):.2e} (rms "
              f"{np.sqrt(np.mean(ours_logits ** 2)):.2e}, spread between images "
              f"{np.mean(np.std(ours_logits, axis=0)):.2e})", flush=True)
    return runners


def main(argv):
    del argv
    if FLAGS.tuned_malloc:
        malloc_settings.rerun_tuned()
    if FLAGS.threads:
        import tensorflow as tf
        import torch
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        torch.set_num_threads(FLAGS.threads)
    rng = np.random.default_rng(FLAGS.seed)
    started = time.perf_counter()
    train_x, train_y, names = load_split("train")
    val_x, val_y, _ = load_split("validation")
    if FLAGS.images_per_class:
        train_x, train_y = subsample(train_x, train_y, FLAGS.images_per_class, rng)
    if FLAGS.val_images:
        pick = rng.permutation(len(val_y))[:FLAGS.val_images]
        val_x, val_y = val_x[pick], val_y[pick]
    val_x = centre_crops(val_x, FLAGS.image_size)
    num_classes = len(names)
    chance = 1.0 / num_classes
    print(f"{len(train_y)} training, {len(val_y)} validation images, {num_classes} classes, "
          f"stored {train_x.shape[1]}px, crops {FLAGS.image_size}px; loaded in "
          f"{time.perf_counter() - started:.0f} s", flush=True)

    steps_per_epoch = len(train_y) // FLAGS.batch_size
    total_steps = steps_per_epoch * FLAGS.epochs
    if FLAGS.max_steps:
        total_steps = min(total_steps, FLAGS.max_steps)
    runners = make_runners(num_classes, val_x, val_y, total_steps)
    eval_every = FLAGS.eval_every or steps_per_epoch
    for runner in runners:
        runner.curve.append((0, 0.0, runner.eval_fn()))
    print(f"step 0: " + ", ".join(f"{r.name} {r.curve[0][2]:.3f}" for r in runners), flush=True)

    # Ctrl-C or SIGTERM ends the training, not the report: the curves so far are still printed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        train(runners, train_x, train_y, steps_per_epoch, total_steps, eval_every, rng)
    except KeyboardInterrupt:
        print(f"stopped early at step {min(r.curve[-1][0] for r in runners)}", flush=True)
    report(runners, chance, steps_per_epoch, total_steps, len(train_y))


def train(runners, train_x, train_y, steps_per_epoch, total_steps, eval_every, rng) -> None:
    """Epochs of shared crops; each runner takes eval_every steps in turn, then validates."""
    step, stop = 0, min(total_steps, FLAGS.stop_after_steps or total_steps)
    while step < stop:
        epoch = step // steps_per_epoch
        order = rng.permutation(len(train_y))
        epoch_x = random_crops(train_x, order, FLAGS.image_size, rng)
        epoch_y = train_y[order]
        epoch_end = min(stop, (epoch + 1) * steps_per_epoch)
        while step < epoch_end:
            chunk_end = min(epoch_end, (step // eval_every + 1) * eval_every)
            first = (step - epoch * steps_per_epoch) * FLAGS.batch_size
            end = (chunk_end - epoch * steps_per_epoch) * FLAGS.batch_size
            for runner in runners:
                if runner.curve and not math.isfinite(runner.losses[-1] if runner.losses else 0):
                    continue  # diverged: its curve ends here
                began = time.perf_counter()
                loss = runner.train_fn(epoch_x[first:end], epoch_y[first:end], step, chunk_end)
                runner.train_seconds += time.perf_counter() - began
                runner.curve.append((chunk_end, runner.train_seconds, runner.eval_fn()))
                runner.losses.append(loss)
            step = chunk_end
            print(f"step {step} (epoch {step / steps_per_epoch:.2f}): " + ", ".join(
                f"{r.name} top-1 {r.curve[-1][2]:.3f} loss {r.losses[-1]:.3f} "
                f"({r.train_seconds:.0f} s)" for r in runners), flush=True)



def report(runners, chance, steps_per_epoch, total_steps, train_images) -> None:
    print("\nSUMMARY")
    print(f"initialization={FLAGS.initialization} lrn={FLAGS.lrn} lr={FLAGS.learning_rate} "
          f"schedule={FLAGS.schedule} batch={FLAGS.batch_size} image_size={FLAGS.image_size} "
          f"precision={FLAGS.precision} steps={total_steps} "
          f"({total_steps / steps_per_epoch:.2f} epochs of {train_images} images)")
    times = {}
    for runner in runners:
        left = next((s for s, _, acc in runner.curve if acc > chance + FLAGS.chance_margin), None)
        reached = next(((s, t) for s, t, acc in runner.curve if acc >= FLAGS.target), None)
        times[runner.name] = reached[1] if reached else None
        steps = runner.curve[-1][0]
        print(f"{runner.name}: final top-1 {runner.curve[-1][2]:.3f}, best "
              f"{max(a for _, _, a in runner.curve):.3f}; left chance "
              f"(> {chance + FLAGS.chance_margin:.2f}) at step {left}; reached "
              f"{FLAGS.target:.2f} at "
              + (f"step {reached[0]} after {reached[1]:.0f} s" if reached else "no step")
              + f"; {steps} steps in {runner.train_seconds:.0f} s "
              f"({steps * FLAGS.batch_size / max(runner.train_seconds, 1e-9):.0f} images/s)")
    if FLAGS.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        figure, axis = plt.subplots(figsize=(6, 3.6), dpi=90)
        for runner in runners:
            axis.plot([s / steps_per_epoch for s, _, _ in runner.curve],
                      [a * 100 for _, _, a in runner.curve], marker=".", label=runner.name)
        axis.axhline(chance * 100, color="grey", linestyle=":", label="chance")
        axis.set_xlabel("epoch")
        axis.set_ylabel("validation top-1 (%)")
        axis.set_title(f"init={FLAGS.initialization} lr={FLAGS.learning_rate} "
                       f"{FLAGS.image_size}px batch {FLAGS.batch_size}", fontsize=9)
        axis.legend()
        figure.tight_layout()
        figure.savefig(FLAGS.png)
        print(f"curves: {FLAGS.png}")
    if len(runners) == 2:
        ours_final, torch_final = runners[0].curve[-1][2], runners[1].curve[-1][2]
        print(f"final top-1 ours - torch: {100 * (ours_final - torch_final):+.1f} points")
        # Per-step rates: a run stopped early leaves the two with unequal step counts.
        ours_rate, torch_rate = (r.curve[-1][0] / max(r.train_seconds, 1e-9) for r in runners)
        print(f"training images/s ours / torch: {ours_rate / max(torch_rate, 1e-9):.2f}x")
        if times["ours"] and times["torch"]:
            print(f"time to {FLAGS.target:.2f} top-1, torch / ours: "
                  f"{times['torch'] / times['ours']:.2f}x")
        else:
            print(f"time to {FLAGS.target:.2f} top-1: ours {times['ours']}, torch {times['torch']}"
                  " (None: not reached)")


if __name__ == "__main__":
    app.run(main)
