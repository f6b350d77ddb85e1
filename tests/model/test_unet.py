import pytest
import torch

from scgapfill.nn import UNet, input_channels, network_input


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_output_shape_for_each_depth(depth):
    side = 2**depth
    net = UNet(in_channels=3, base_channels=4, depth=depth).eval()
    x = torch.rand(5, 3, 2 * side, 3 * side)
    assert net(x).shape == (5, 1, 2 * side, 3 * side)


def test_output_lies_in_unit_interval_even_for_extreme_inputs():
    torch.manual_seed(0)
    net = UNet(in_channels=2, base_channels=4, depth=2).eval()
    out = net(torch.randn(4, 2, 8, 8) * 100)
    assert torch.all(out >= 0) and torch.all(out <= 1)


def test_grid_not_divisible_by_two_to_the_depth_raises():
    net = UNet(in_channels=2, base_channels=4, depth=2)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.rand(1, 2, 8, 10))


def test_wrong_channel_count_raises():
    with pytest.raises(ValueError, match=r"\(n, 3, H, W\)"):
        UNet(in_channels=3, base_channels=4, depth=1)(torch.rand(1, 2, 4, 4))


@pytest.mark.parametrize("kwargs", [{"depth": 0}, {"base_channels": 0}, {"dropout": 1.0}])
def test_invalid_constructor_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        UNet(in_channels=2, **kwargs)


def test_training_masked_entry_looks_like_an_inference_zero():
    values = torch.tensor([[[[0.5, 0.0], [0.3, 0.7]]]])
    hidden = torch.tensor([[[[True, False], [False, False]]]])
    as_training = network_input(values, hidden)
    as_inference = network_input(values.masked_fill(hidden, 0.0))
    assert torch.equal(as_training, as_inference)
    assert as_training[0, 1].tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_context_adds_one_channel():
    values = torch.rand(2, 1, 4, 4)
    assert network_input(values, None, torch.rand(2, 1, 4, 4)).shape[1] == input_channels(True) == 3
    assert network_input(values).shape[1] == input_channels(False) == 2


def test_residual_output_starts_from_the_context():
    from scgapfill.nn import build_unet

    from scgapfill.params import ModelParams

    params = ModelParams(context_channel=True, context_residual=True, base_channels=4, depth=2, dropout=0.0)
    net = build_unet(params).eval()
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.zeros_(net.head.bias)
    context = torch.rand(2, 1, 8, 8) * 0.9 + 0.05
    out = net(network_input(torch.rand(2, 1, 8, 8), None, context))
    torch.testing.assert_close(out, context, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="context_residual"):
        build_unet(params.model_copy(update={"context_channel": False}))


def test_channels_last_is_a_layout_not_a_different_network():
    from scgapfill.nn import build_unet

    from scgapfill.params import ModelParams

    params = ModelParams(context_channel=True, base_channels=4, depth=2, dropout=0.0)
    torch.manual_seed(0)
    fast = build_unet(params).eval()
    plain = build_unet(params.model_copy(update={"channels_last": False})).eval()
    plain.load_state_dict(fast.state_dict())
    conv = fast.encoders[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert plain.encoders[0][0].weight.is_contiguous()
    x = torch.rand(3, 3, 8, 12)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-6)
    # A loaded state dict keeps the network's own layout: bundles do not depend on it.
    fast.load_state_dict(plain.state_dict())
    assert fast.encoders[0][0].weight.is_contiguous(memory_format=torch.channels_last)
