"""Training presets (one JSON file per model of the paper's tables) and Accelerate configs, installed as
`demvae.configuration` and read through `importlib.resources`."""
