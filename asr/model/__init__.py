"""The model: the streaming GRU-CTC network (`network`), its characters (`tokenizer`), the one-file bundle
(`checkpoint`), loading by path or name (`loading`, `user_models`), and export to ONNX/TorchScript with the
backends that run those files (`export`, `backends`)."""
