"""Building blocks of the learned fields: input encodings, feature grids, SIREN layers and the MLP heads."""
