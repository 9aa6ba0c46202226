"""fusionseg.backbones."""
