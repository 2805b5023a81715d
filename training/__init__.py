"""Entry points of the `demvae` command: training with Accelerate, evaluation, inspection, reproduction, Hub push."""
