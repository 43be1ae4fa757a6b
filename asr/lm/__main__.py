"""`python -m asr.lm`: estimate an ARPA n-gram LM (and a lexicon) from text; see `asr.lm.arpa`."""

import sys

from asr.lm.arpa import main

sys.exit(main())
