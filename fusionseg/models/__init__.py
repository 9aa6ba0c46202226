"""fusionseg.models."""
