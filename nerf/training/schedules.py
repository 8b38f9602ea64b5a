"""Learning-rate schedules: exponential decay over steps, or over a time budget."""
from __future__ import annotations

from nerf.config import TrainConfig


def learning_rate(t: TrainConfig, step: int, seconds: float = 0.0) -> float:
    """train.lr decayed by lr_decay_factor over lr_decay_steps steps, or over the train.max_minutes
    budget (`lr_decay_over: minutes`, `seconds` of training so far): a time-capped run then ends
    at the decayed rate whatever its step rate."""
    if t.lr_decay_over == "minutes":
        return t.lr * t.lr_decay_factor ** min(seconds / (t.max_minutes * 60), 1.0)
    return t.lr * t.lr_decay_factor ** (step / t.lr_decay_steps)
