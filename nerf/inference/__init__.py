"""Using a trained model: rendering and scoring views, the evaluation of a run, videos, the showcase."""
