"""Which devices train, and how: strategy selection, CPU replicas, mixed precision, XLA.

Strategy, by what the machine offers:
  - TF_CONFIG naming more than one worker: MultiWorkerMirroredStrategy (synchronous
    data-parallel across machines; the chief, or worker 0 when there is no chief, writes).
  - several GPUs, or --num_cpu_replicas > 1: MirroredStrategy over them.
  - one device: TensorFlow's default strategy, not a one-device MirroredStrategy. With one
    replica there is nothing to all-reduce; the default strategy keeps plain variables and
    Keras's ordinary code path (which is also what users hit in a notebook), where a
    MirroredStrategy would wrap every variable and every step in cross-replica machinery
    that only adds overhead and stack frames.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import tensorflow as tf

MIXED_PRECISION_CHOICES = ("auto", "none", "mixed_float16", "mixed_bfloat16")


def split_cpu_into_replicas(num_replicas: int) -> None:
    """Splits the CPU into `num_replicas` logical devices, so MirroredStrategy can use them.

    This is how a machine with no accelerator runs (and tests) the multi-replica path. It
    must happen before TensorFlow initialises its devices, i.e. before the first op runs.
    GPUs are hidden, so the replicas really are the CPU ones.
    """
    if num_replicas <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_visible_devices([], "GPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_replicas)]
        )
    except RuntimeError as error:
        raise RuntimeError(
            "--num_cpu_replicas must be applied before TensorFlow initialises its devices"
        ) from error


def worker_count() -> int:
    """How many machines TF_CONFIG names (the chief counts as a worker)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = config.get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def select_strategy(num_cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """The strategy for this machine (see the module docstring for the rules)."""
    if worker_count() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    device_type = "CPU" if num_cpu_replicas > 1 else "GPU"
    devices = [device.name for device in tf.config.list_logical_devices(device_type)]
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def distribute(strategy: tf.distribute.Strategy, dataset_fn,
               prefetch_device: str | None = None) -> tf.data.Dataset:
    """`dataset_fn`'s pipelines spread over the replicas; a plain dataset with one replica,
    where the default strategy has nothing to distribute and Keras reads it as it is.

    With one replica on a GPU (or on `prefetch_device`), the dataset's last step copies the
    next two batches into the device's memory while the current step runs: the default
    strategy does not, so each step would otherwise wait for its batch to cross PCIe.
    Several replicas need nothing here: `distribute_datasets_from_function`'s iterators
    prefetch to their devices themselves.
    """
    if strategy.num_replicas_in_sync == 1:
        dataset = dataset_fn(tf.distribute.InputContext())
        device = prefetch_device or _the_one_gpu()
        if device:
            dataset = dataset.apply(tf.data.experimental.prefetch_to_device(device, 2))
        return dataset
    return strategy.distribute_datasets_from_function(dataset_fn)


def _the_one_gpu() -> str | None:
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if len(gpus) == 1 else None


def input_pipelines(strategy: tf.distribute.Strategy) -> int:
    """How many input pipelines `distribute` builds: one per worker process."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return max(worker_count(), 1)
    return 1


def any_worker(strategy: tf.distribute.Strategy) -> Callable[[bool], bool]:
    """A function every worker calls at the same step: True on all if any worker passed True.

    For decisions the whole job must take at one step, such as stopping when a preemption
    signal reached only some machines: a worker that stopped alone would leave the others
    blocked in their next all-reduce. With one worker it is `bool`, no communication at all.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return bool

    @tf.function
    def total(flag: tf.Tensor):
        def replica_sum(value):
            # The identity puts the value on this replica's device; an all-reduce of a
            # tensor without a device has no destination.
            return tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.identity(value))

        return strategy.run(replica_sum, args=(flag,))

    def agree(flag: bool) -> bool:
        summed = strategy.experimental_local_results(total(tf.constant(float(flag))))[0]
        return float(summed) > 0

    return agree


def batches_per_pipeline(context: tf.distribute.InputContext, steps: int) -> int:
    """Per-replica batches one input pipeline yields for `steps` global steps."""
    return steps * context.num_replicas_in_sync // context.num_input_pipelines


def describe(strategy: tf.distribute.Strategy) -> str:
    name = type(strategy).__name__
    if name == "_DefaultDistributionStrategy":
        name = "default strategy"
    return f"{name} with {strategy.num_replicas_in_sync} replica(s)"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, summaries and the model.

    Only multi-worker strategies have more than one writer candidate: there the chief writes,
    or worker 0 when the cluster has no chief (TensorFlow's convention).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_directory(directory: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes: `directory` on the chief, a private scratch dir elsewhere.

    Multi-worker checkpointing needs every worker to take part in a save (the variables may be
    read collectively), but only the chief's copy is kept.
    """
    if is_chief(strategy):
        return directory
    resolver = strategy.cluster_resolver
    return os.path.join(directory, "workers", f"{resolver.task_type}_{resolver.task_id}")


def cpu_has_bfloat16() -> bool:
    """Whether the CPU computes in bfloat16 natively (AMX or AVX512-BF16), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def choose_mixed_precision(requested: str) -> tuple[str, str]:
    """(Keras dtype policy name, why): the --mixed_precision flag resolved for this machine.

    `auto` picks bfloat16 on GPUs that compute in it (compute capability 8.0+: A100, H100,
    RTX 30xx and later), float16 on the older tensor-core GPUs (7.x: V100, T4, RTX 20xx),
    bfloat16 on CPUs with bfloat16 instructions, and float32 everywhere else, where reduced
    precision is emulated and slower. bfloat16 has float32's exponent range, so it needs no
    loss scaling and cannot overflow where float32 would not; float16 needs dynamic loss
    scaling (loss_scale.py), so it is chosen only where bfloat16 is not fast.
    """
    if requested not in MIXED_PRECISION_CHOICES:
        raise ValueError(f"unknown mixed precision {requested!r}")
    if requested == "none":
        return "float32", "requested --mixed_precision=none"
    if requested != "auto":
        return requested, f"requested --mixed_precision={requested}"
    gpus = tf.config.get_visible_devices("GPU")
    if gpus:
        capabilities = [
            tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
            for gpu in gpus
        ]
        slowest = min(capabilities)
        if slowest >= (8, 0):
            return ("mixed_bfloat16", f"GPU compute capability {slowest[0]}.{slowest[1]} >= 8.0 "
                    "(bfloat16, no loss scaling)")
        if slowest >= (7, 0):
            return "mixed_float16", f"GPU compute capability {slowest[0]}.{slowest[1]} >= 7.0"
        return "float32", f"GPU compute capability {slowest[0]}.{slowest[1]} < 7.0"
    if cpu_has_bfloat16():
        return "mixed_bfloat16", "no GPU; the CPU has amx_bf16/avx512_bf16"
    return "float32", "no GPU and no bfloat16 instructions on the CPU"
