"""Held-out, MCV, clustering and truth metrics for the U-Net and every baseline on the same masks; plots."""

from scgapfill.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
