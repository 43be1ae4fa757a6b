"""Helpers every layer may use: one-line user errors (`errors`), whole-or-nothing file writes (`atomic`) and
torch's thread count (`threads`). They import nothing else from `asr`."""
