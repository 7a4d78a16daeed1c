"""The torch side: walking live modules, reading checkpoints, comparing tensors."""
