"""`python -m asr.train` (also under torchrun): the `asr train` command."""

import sys

from asr.train.cli import main

sys.exit(main())
