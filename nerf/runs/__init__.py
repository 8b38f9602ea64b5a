"""The run folder on disk: its layout, atomic checkpoints, and loading a trained model back."""
