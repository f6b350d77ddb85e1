"""Evaluation protocols: how a denoiser is scored (docs/evaluation.md)."""
