"""Word and character language models: estimating ARPA n-grams from text (`arpa`, `python -m asr.lm`), reading
pocketsphinx's binary LM (`sphinx`), the general-English default LM built from it (`default`) and mixing two
ARPA models (`mix`)."""
