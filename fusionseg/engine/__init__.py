"""fusionseg.engine."""
