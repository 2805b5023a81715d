"""The model-card template, installed as `demvae.model_cards` and read through `importlib.resources`."""
