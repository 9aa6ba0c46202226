"""fusionseg.data."""
