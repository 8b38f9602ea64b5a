"""The web viewer (viser): the scene rendered at the browser's camera, the training cameras, the
scene box, and camera paths drawn from the current view. `view-scene` serves a trained run,
`train-scene --viewer` the run being trained."""
