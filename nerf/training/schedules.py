"""Learning-rate schedules: exponential decay over steps, or over a time budget."""
from __future__ import annotations

from nerf.config import TrainConfig


def budget_share(t: TrainConfig, seconds: float) -> float:
    """The share of the train.max_minutes budget spent after `seconds` of training, for a run
    whose schedule follows its clock (`lr_decay_over: minutes`); 0 for a run scheduled in steps."""
    if t.lr_decay_over != "minutes" or t.max_minutes <= 0:
        return 0.0
    return seconds / (t.max_minutes * 60)


def learning_rate(t: TrainConfig, step: int, seconds: float = 0.0) -> float:
    """train.lr decayed by lr_decay_factor over lr_decay_steps steps, or over the train.max_minutes
    budget (`lr_decay_over: minutes`, `seconds` of training so far): a time-capped run then ends
    at the decayed rate whatever its step rate. Over minutes, progress is the larger of the time
    and the step share, so a run that reaches train.max_steps first also ends fully decayed."""
    if t.lr_decay_over == "minutes":
        progress = budget_share(t, seconds)
        if t.max_steps > 0:
            progress = max(progress, step / t.max_steps)
        return t.lr * t.lr_decay_factor ** min(progress, 1.0)
    return t.lr * t.lr_decay_factor ** (step / t.lr_decay_steps)
