"""Placeholder: the lead is writing this module (train, train_batch)."""
