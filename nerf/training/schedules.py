"""Learning-rate schedules: exponential decay over steps, or over a time budget."""
from __future__ import annotations

from nerf.config import TrainConfig


def learning_rate(t: TrainConfig, step: int, seconds: float = 0.0) -> float:
    """train.lr decayed by lr_decay_factor over lr_decay_steps steps, or over the train.max_minutes
    budget (`lr_decay_over: minutes`, `seconds` of training so far): a time-capped run then ends
    at the decayed rate whatever its step rate. Over minutes, progress is the larger of the time
    and the step share, so a run that reaches train.max_steps first also ends fully decayed."""
    if t.lr_decay_over == "minutes":
        progress = seconds / (t.max_minutes * 60) if t.max_minutes > 0 else 0.0
        if t.max_steps > 0:
            progress = max(progress, step / t.max_steps)
        return t.lr * t.lr_decay_factor ** min(progress, 1.0)
    return t.lr * t.lr_decay_factor ** (step / t.lr_decay_steps)
