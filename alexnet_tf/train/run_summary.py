"""The line a training run ends with on stdout: what it did, how well, where the model is.

summary.json says it all for programs; a user at a terminal (or reading a CI log) wants the
epochs, the best validation accuracy, the time, the speed and the model's path in one line.
"""

from __future__ import annotations


def best_validation(history: list[dict]) -> dict | None:
    """The epoch of the highest validation top-1 accuracy, with its top-5; None without any."""
    scored = [record for record in history if record.get("val_top1_accuracy") is not None]
    if not scored:
        return None
    best = max(scored, key=lambda record: record["val_top1_accuracy"])
    return {"epoch": best["epoch"], "top1_accuracy": best["val_top1_accuracy"],
            "top5_accuracy": best.get("val_top5_accuracy")}


def duration(seconds: float) -> str:
    """19.3s, 4m05s, 2h07m: as precise as a reader needs."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def one_line(summary: dict, history: list[dict], model_path: str) -> str:
    """E.g. "Trained 90 epochs (450810 steps) in 2h07m, 1893 images/s; best validation top-1
    57.1% (epoch 88), top-5 80.2%; model: /runs/alexnet/model.keras"."""
    seconds = sum(record.get("seconds", 0.0) for record in history)
    speed = summary.get("steady_state_training_images_per_second")
    # Unmeasured when every step fell in --throughput_warmup_steps or an epoch's first call.
    speed_words = f"{speed:.0f} images/s" if speed else "too few steps to measure images/s"
    best = summary.get("best_validation")
    if best is not None:
        top5 = best.get("top5_accuracy")
        validation = (f"best validation top-1 {100 * best['top1_accuracy']:.1f}% "
                      f"(epoch {best['epoch']})"
                      + ("" if top5 is None else f", top-5 {100 * top5:.1f}%"))
    elif summary.get("flags", {}).get("validation") is False:
        validation = "no validation (--novalidation)"
    else:
        validation = "no validation pass ran"
    epochs = summary["epochs_completed"]
    return (f"Trained {epochs} epoch{'' if epochs == 1 else 's'} "
            f"({summary['steps_completed']} steps) "
            f"in {duration(seconds)}, {speed_words}; {validation}; model: {model_path}")
