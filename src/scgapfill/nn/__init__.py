"""Plain torch building blocks: the U-Net and the gap-filling loss (no Lightning here)."""

from .losses import gapfill_loss, loss_terms, masked_mae, masked_mse, ssim, total_variation
from .unet import UNet, input_channels, network_input

__all__ = [
    "UNet",
    "input_channels",
    "network_input",
    "gapfill_loss",
    "loss_terms",
    "masked_mae",
    "masked_mse",
    "ssim",
    "total_variation",
]
