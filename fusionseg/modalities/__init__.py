"""fusionseg.modalities."""
