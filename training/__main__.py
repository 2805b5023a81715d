"""`python -m demvae ...` and `accelerate launch -m demvae ...`: the `demvae` command."""

import sys

from .cli import main

sys.exit(main())
