"""What a resume does with flags that differ from those of the run it resumes.

Each checkpoint records its run's flags. Rerunning into the same --model_dir with other flags
is often deliberate (more --epochs, a lower --learning_rate after a divergence, another machine)
and sometimes a mistake (another --batch_size, another data set). Every difference is named
with what it does to the resumed run: applied, ignored (and why), or refused where the resume
would no longer mean anything; refused ones stop the run before it trains. What is not known
to be safe is refused mid-epoch: a flag added later without a rule here cannot quietly change
what the rest of an epoch reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from absl import app, logging

APPLIED, IGNORED, REFUSED = "applied", "ignored", "refused"

# flag -> (what a change does, why), at any point of an epoch.
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
}
# The flags known to reach neither the records an epoch reads, nor their order, nor the network's
# variables: a change applies from the resumed step on, mid-epoch too. Every other flag, including
# one added later and not listed here, is refused mid-epoch (the epoch's remaining steps were
# drawn under the old value, so they could repeat or never read some records: resuming at record
# 8 of 32 with --cache_records flipped, the epoch read 30 distinct records and never 2) and
# applied at an epoch's end, where the next epoch draws afresh.
SAFE = {
    "learning_rate": "the schedule goes on from the new initial rate, keeping the reductions it "
                     "has made",
    "lr_decay_factor": "reductions made so far are recomputed with the new factor",
    "lr_patience": "the schedule's next decision uses it",
    "lr_warmup_epochs": "the ramp of the next steps, counted from the steps already taken",
    "lr_min_delta": "the schedule's next decision uses it",
    "lr_max_reductions": "the schedule's next decision uses it",
    "lr_step_epochs": "the step schedule's next boundary uses it",
    "momentum": "the optimizer's next update uses it",
    "weight_decay": "the loss of the next step uses it",
    "epochs": "the run ends after the new number of epochs",
    "train_steps": "the run ends after the new number of optimizer steps",
    "validation": "validation at epoch ends only",
    "validation_steps": "validation at epoch ends only",
    "jit_compile": "the same step, compiled another way",
    "grouped_conv": "the same weights, computed another way",
    "steps_per_execution": "the same steps, several per call (exactly at epoch ends)",
    "num_cpu_replicas": "the same global batches, split over another number of CPU devices",
    "preemption_check_steps": "how often workers agree on a stop",
    "keep_checkpoints": "how many checkpoints are kept",
    "throughput_warmup_steps": "what the speed report leaves out",
    "progress": "what is printed",
}
# Flags whose change is meaningless mid-epoch but applies at an epoch's end (the default for
# flags in neither table, with this reason).
_REFUSED_MID_EPOCH = {
    "seed": "the steps already taken of this epoch were drawn in the old seed's order",
    "steps_per_epoch": "the checkpoint is part-way into an epoch of the old length",
    "data_dir": "the steps already taken of this epoch were drawn from the old folder's records",
}
_AT_EPOCH_END = {
    "seed": "the epochs still to run read another order and other crops, so the run no longer "
            "equals an uninterrupted one",
    "data_dir": "the records are read from the new folder; if they are not the same records, "
                "the run mixes two data sets",
}
_DEFAULT_MID_EPOCH = ("it may reach the input pipeline or the network, and this epoch's remaining "
                      "steps were drawn under the old value: some records could be read twice "
                      "and others never; change it at an epoch's end")
_DEFAULT_AT_EPOCH_END = "from the next epoch on"


def rule(flag: str, *, mid_epoch: bool) -> tuple[str, str]:
    """(outcome, why) of a change of `flag` in a resume at or between epoch ends."""
    if flag in _RULES:
        return _RULES[flag]
    if flag in SAFE:
        return APPLIED, SAFE[flag]
    if mid_epoch:
        return REFUSED, _REFUSED_MID_EPOCH.get(flag, _DEFAULT_MID_EPOCH)
    return APPLIED, _AT_EPOCH_END.get(flag, _DEFAULT_AT_EPOCH_END)


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
        outcome, why = rule(flag, mid_epoch=mid_epoch)
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
