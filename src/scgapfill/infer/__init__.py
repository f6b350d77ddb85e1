"""Imputation with a trained bundle: in memory, streamed in chunks, against a reference."""
