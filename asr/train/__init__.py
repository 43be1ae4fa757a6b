"""Training: JSONL manifests and corpus importers (`manifests`), the dataset and its batches (`dataset`), the
`asr train` options (`options`), the trainer (`trainer`) with its device, DDP and schedule (`runtime`), losses and
validation (`validation`) and its log and curve (`curves`); `python -m asr.train` (`cli`)."""
