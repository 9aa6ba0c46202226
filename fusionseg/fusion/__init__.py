"""fusionseg.fusion."""
