"""Implicit neural representations beside NeRF: image fitting and Reptile-learned initialisations."""
