"""What is learned and how: fields, models, training, inference and the commands.

Installed, this package also holds `nerf.render` (the folder render/) and `nerf.datasets` (the folder
datasets/), so the project claims one top-level name. It imports nothing itself.
"""
