"""Plain torch building blocks: the U-Net and the gap-filling loss (no Lightning here)."""

from scgapfill.nn.losses import gapfill_loss, loss_terms, masked_mae, masked_mse, masked_poisson_nll, ssim, total_variation
from scgapfill.nn.unet import UNet, build_unet, input_channels, network_input

__all__ = [
    "UNet",
    "build_unet",
    "masked_poisson_nll",
    "input_channels",
    "network_input",
    "gapfill_loss",
    "loss_terms",
    "masked_mae",
    "masked_mse",
    "ssim",
    "total_variation",
]
