"""What a resume does with flags that differ from those of the run it resumes.

Each checkpoint records its run's flags. Rerunning into the same --model_dir with other flags
is often deliberate (more --epochs, a lower --learning_rate after a divergence, another machine)
and sometimes a mistake (another --batch_size, another data set). Every difference is named
with what it does to the resumed run: applied, ignored (and why), or refused where the resume
would no longer mean anything; refused ones stop the run before it trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from absl import app, logging

APPLIED, IGNORED, REFUSED = "applied", "ignored", "refused"

# flag -> (what a change does, why). Flags not listed apply from the resumed step on.
_RULES = {
    "variant": (REFUSED, "the checkpoint holds another network"),
    "num_classes": (REFUSED, "the checkpoint's last layer has another width"),
    "image_size": (REFUSED, "the checkpoint's fc6 was trained for another input size"),
    "batch_size": (REFUSED, "the steps already taken, the learning rate and (with --seed) the "
                   "images each step reads all belong to the old batch size"),
    "lr_schedule": (REFUSED, "the checkpoint holds the other schedule's state"),
    "initialization": (IGNORED, "the weights come from the checkpoint"),
    "lrn": (REFUSED, "the checkpoint's weights were trained through the other LRN"),
    "init_from": (IGNORED, "the weights come from the checkpoint"),
    "train_layers": (REFUSED, "the checkpoint's optimizer state is for the old trainable layers"),
    "model_dir": (IGNORED, "the same folder, spelt differently"),
    "learning_rate": (APPLIED, "the schedule goes on from the new initial rate, keeping the "
                      "reductions it has made"),
    "lr_decay_factor": (APPLIED, "reductions made so far are recomputed with the new factor"),
    "epochs": (APPLIED, "the run ends after the new number of epochs"),
    "seed": (APPLIED, "the epochs still to run read another order and other crops, so the run "
             "no longer equals an uninterrupted one"),
    "data_dir": (APPLIED, "the records are read from the new folder; if they are not the same "
                 "records, the run mixes two data sets"),
}
# Changes that would make a checkpoint taken mid-epoch skip the wrong steps.
_REFUSED_MID_EPOCH = {
    "seed": "the steps already taken of this epoch were drawn in the old seed's order",
    "steps_per_epoch": "the checkpoint is part-way into an epoch of the old length",
    "data_dir": "the steps already taken of this epoch were drawn from the old folder's records",
}


@dataclass(frozen=True)
class FlagChange:
    flag: str
    saved: object
    now: object
    outcome: str
    why: str

    def describe(self) -> str:
        return f"--{self.flag} {self.saved!r} -> {self.now!r}: {self.outcome} ({self.why})"


def changes(saved: dict, now: dict, *, mid_epoch: bool) -> list[FlagChange]:
    """Every flag whose value differs between the checkpoint's run and this one.

    Flags only one side knows (a flag added or removed by an upgrade) are left out.
    """
    found = []
    for flag in sorted(set(saved) & set(now)):
        if saved[flag] == now[flag]:
            continue
        if mid_epoch and flag in _REFUSED_MID_EPOCH:
            outcome, why = REFUSED, _REFUSED_MID_EPOCH[flag]
        else:
            outcome, why = _RULES.get(flag, (APPLIED, "from the resumed step on"))
        found.append(FlagChange(flag, saved[flag], now[flag], outcome, why))
    return found


def refusal(found: list[FlagChange], model_dir: str) -> str | None:
    """The one-line error for the refused changes, or None when there are none."""
    refused = [change for change in found if change.outcome == REFUSED]
    if not refused:
        return None
    return (f"--model_dir={model_dir} holds a run that this command cannot resume: "
            + "; ".join(f"--{c.flag}={c.now} differs from its --{c.flag}={c.saved} ({c.why})"
                        for c in refused)
            + ". Rerun with the checkpoint's values, or choose another --model_dir")


def review(checkpoint, schedule, now: dict, *, model_dir: str, mid_epoch: bool) -> None:
    """Names each flag that differs from the resumed run's, refuses the meaningless changes
    (app.UsageError), applies a new learning rate to the restored schedule, and records this
    run's flags (`now`) in `checkpoint` for the checkpoints it saves."""
    saved = json.loads(checkpoint.run_flags.numpy().decode("utf-8"))
    found = changes(saved, now, mid_epoch=mid_epoch) if saved else []
    message = refusal(found, model_dir)
    if message:
        raise app.UsageError(message)
    for change in found:
        logging.warning("Resuming with a changed flag: %s", change.describe())
    if hasattr(schedule, "restart_from") and any(
            change.flag in ("learning_rate", "lr_decay_factor") for change in found):
        logging.warning("The resumed run goes on at learning rate %g",
                        schedule.restart_from(now["learning_rate"]))
    checkpoint.run_flags.assign(json.dumps(now))
