"""A small U-Net that maps a cell's gene grid to a filled grid in [0, 1].

The input-channel convention lives here too (:func:`network_input`) because
training and inference must build the channels identically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from scgapfill.params import ModelParams


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions with ReLU; padding keeps the grid size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``depth`` down/up levels and a sigmoid output channel.

    Parameters
    ----------
    in_channels
        Input channels (masked grid, observed flag, optional neighbour context).
    base_channels
        Channels of the first encoder level; each level below doubles them.
    depth
        Number of max-pool steps; grid sides must be divisible by ``2**depth``.
    dropout
        Channel dropout (``Dropout2d``) in the bottleneck and after every decoder block.
    channels_last
        Keep weights and activations channels-last (NHWC), the layout oneDNN's CPU and cuDNN's
        GPU convolutions are fastest in (docs/performance.md). The values computed are the same up
        to float rounding; the stored weights do not depend on it.
    """

    def __init__(
        self,
        in_channels: int,
        base_channels: int = 16,
        depth: int = 2,
        dropout: float = 0.2,
        residual_channel: int | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if residual_channel is not None and not 0 <= residual_channel < in_channels:
            raise ValueError(f"residual_channel {residual_channel} is not an input channel (0..{in_channels - 1})")
        # The output is sigmoid(head + logit(input[residual_channel])): the network starts
        # from that channel (the neighbour context) and learns corrections to it.
        self.residual_channel = residual_channel
        if in_channels < 1:
            raise ValueError(f"UNet in_channels must be >= 1, got {in_channels}")
        if base_channels < 1:
            raise ValueError(f"model.base_channels must be >= 1, got {base_channels}")
        if depth < 1:
            raise ValueError(f"model.depth must be >= 1, got {depth}")
        if not 0 <= dropout < 1:
            raise ValueError(f"model.dropout must lie in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.depth = depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths[:-1]:
            self.encoders.append(_conv_block(previous, width))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(_conv_block(widths[-2], widths[-1]), nn.Dropout2d(dropout))
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            self.upsamplers.append(nn.ConvTranspose2d(widths[level + 1], widths[level], kernel_size=2, stride=2))
            # The decoder sees the up-sampled map and the encoder skip side by side.
            self.decoders.append(nn.Sequential(_conv_block(2 * widths[level], widths[level]), nn.Dropout2d(dropout)))
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def check_grid(self, height: int, width: int) -> None:
        """Raise ValueError unless both sides are divisible by ``2**depth``."""
        divisor = 2**self.depth
        if height % divisor or width % divisor:
            raise ValueError(
                f"UNet of depth {self.depth} needs grid sides divisible by {divisor}, got {height}x{width}; "
                f"recompute the gene layout with divisor=2**model.depth={divisor}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, in_channels, H, W)`` -> ``(n, 1, H, W)`` in ``(0, 1)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects (n, {self.in_channels}, H, W) input, got shape {tuple(x.shape)}")
        self.check_grid(x.shape[-2], x.shape[-1])
        x = x.contiguous(memory_format=self.memory_format)
        inputs = x
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        logits = self.head(x)
        if self.residual_channel is not None:
            base = inputs[:, self.residual_channel : self.residual_channel + 1].float().clamp(1e-4, 1 - 1e-4)
            logits = logits + torch.logit(base).to(logits.dtype)
        return torch.sigmoid(logits)


CONTEXT_CHANNEL = 2  # index of the context in network_input's channels


def input_channels(context: bool) -> int:
    """Number of network input channels: values, observed flag, optional context."""
    return 3 if context else 2


def network_input(
    values: torch.Tensor,
    hidden: torch.Tensor | None = None,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """Stack the network's input channels.

    Parameters
    ----------
    values
        ``(n, 1, H, W)`` scaled values.
    hidden
        Boolean training mask of the same shape, or ``None`` at inference.
    context
        ``(n, 1, H, W)`` scaled neighbour context, or ``None`` when the model has none.

    Returns
    -------
    ``(n, C, H, W)``: ``[masked values, observed, context?]``.

    Notes
    -----
    "Observed" means "nonzero and not training-masked". A training-masked entry
    therefore looks exactly like a zero does at inference, where no mask exists
    and the zeros are the entries to fill.
    """
    masked = values if hidden is None else values.masked_fill(hidden, 0.0)
    observed = (masked > 0).to(masked.dtype)
    channels = [masked, observed]
    if context is not None:
        channels.append(context.to(masked.dtype))
    return torch.cat(channels, dim=1)


def build_unet(model: ModelParams) -> UNet:
    """The UNet a :class:`~scgapfill.params.ModelParams` describes (training and loading share this)."""
    if model.context_residual and not model.context_channel:
        raise ValueError("model.context_residual needs model.context_channel: true")
    return UNet(
        input_channels(model.context_channel),
        base_channels=model.base_channels,
        depth=model.depth,
        dropout=model.dropout,
        residual_channel=CONTEXT_CHANNEL if model.context_residual else None,
        channels_last=model.channels_last,
    )
