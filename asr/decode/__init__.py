"""Turning the model's per-frame letter probabilities into text: greedy (`greedy`), CTC prefix beam search with a
word LM and hotwords (`beam`, `hotwords`, `tables`), and the one set of decoding options (`config`)."""
