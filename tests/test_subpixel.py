"""The sub-pixel form of a transposed convolution (codec.subpixel) computes the same function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from codec import subpixel
from codec.adaptation.decoding import run_folded


@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "stride", "padding", "output_padding"),
    [
        (96, 3, 5, 2, 2, 1),
        (16, 16, 5, 2, 2, 1),
        (8, 3, 3, 2, 1, 1),
        (8, 4, 4, 2, 1, 0),
        (8, 3, 9, 4, 4, 3),
        (6, 3, 6, 3, 2, 1),
    ],
)
def test_the_subpixel_layer_equals_the_transposed_convolution(
    cin: int, cout: int, kernel: int, stride: int, padding: int, output_padding: int
) -> None:
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding=output_padding)
    x = torch.randn(2, cin, 11, 14)
    assert subpixel.applies(layer)
    expected = layer(x)
    got = subpixel.run_layer(layer, x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=2e-5, rtol=0)
    xc = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(subpixel.run_layer(layer.to(memory_format=torch.channels_last), xc), expected, atol=2e-5)


@pytest.mark.parametrize(
    "layer",
    [
        nn.ConvTranspose2d(8, 4, 5, 2, 2, output_padding=0),  # output 2H - 1, not 2H
        nn.ConvTranspose2d(8, 4, 5, 2, 2, output_padding=1, groups=2),
        nn.ConvTranspose2d(8, 4, 5, 2, 4, output_padding=1, dilation=2),
        nn.ConvTranspose2d(8, 4, (5, 3), 2, (2, 1), output_padding=1),
        nn.Conv2d(8, 4, 3),
    ],
)
def test_layers_it_cannot_rewrite_exactly_are_left_alone(layer: nn.Module) -> None:
    assert not subpixel.applies(layer)


def test_a_folded_map_before_the_last_layer_applies_to_the_subpixel_form() -> None:
    """An adapter map folded into the last layer's weights gives the same pixels either way."""
    torch.manual_seed(1)
    g_s = nn.Sequential(
        nn.ConvTranspose2d(12, 8, 5, 2, 2, output_padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 3, 5, 2, 2, output_padding=1),
    )
    y = torch.randn(1, 12, 9, 7)
    maps = {1: torch.eye(8) + 0.3 * torch.randn(8, 8)}
    with torch.inference_mode():
        canonical = run_folded(g_s, y, maps)
        fast = run_folded(g_s, y, maps, subpixel_last=True)
        unmapped = run_folded(g_s, y, {}, subpixel_last=True)
    assert torch.allclose(fast, canonical, atol=2e-5)
    assert not torch.allclose(unmapped, canonical, atol=1e-2)  # the map did change the output


def test_only_the_last_layer_is_rewritten() -> None:
    """The wide layers stay transposed convolutions (slower as sub-pixel ones on CPU), so the
    result is bit-identical until the last layer."""
    torch.manual_seed(2)
    g_s = nn.Sequential(nn.ConvTranspose2d(12, 8, 5, 2, 2, output_padding=1), nn.ReLU())
    y = torch.randn(1, 12, 9, 7)
    with torch.inference_mode():
        assert torch.equal(run_folded(g_s, y, {}, subpixel_last=True), g_s(y))


def test_the_adaptive_encoder_optimises_through_a_subpixel_copy_and_codes_with_the_original() -> None:
    """The optimisation copy's last layer is the sub-pixel one (cfg.subpixel); the shared model,
    which the canonical coding and every decoder use, keeps its transposed convolution."""
    from PIL import Image

    from codec.adaptation.encoder import AdaptiveEncoder, resolve_config
    from codec.imageio import load_image
    from codec.progress import no_progress
    from codec.zoo import default_registry
    from tests.conftest import synthetic_rgb

    reg = default_registry()
    base = reg.get("default")
    img = load_image(Image.fromarray(synthetic_rgb(40, 48, seed=4)))
    cpu = torch.device("cpu")
    enc = AdaptiveEncoder(base, img, 2.0, resolve_config("fast"), cpu, no_progress, reg)
    off = AdaptiveEncoder(base, img, 2.0, resolve_config("fast", subpixel=False), cpu, no_progress, reg)
    last = [net.get_submodule("g_s")[-1] for net in (enc.net, base.net, off.net)]  # type: ignore[index]
    assert type(last[0]) is subpixel.SubPixelConvTranspose2d
    assert type(last[1]) is nn.ConvTranspose2d
    assert last[0].weight is not last[1].weight
    assert type(last[2]) is nn.ConvTranspose2d


def test_a_frozen_subpixel_layer_gathers_its_weight_once_and_again_after_a_change() -> None:
    torch.manual_seed(3)
    layer = subpixel.SubPixelConvTranspose2d.like(nn.ConvTranspose2d(8, 3, 5, 2, 2, output_padding=1))
    layer.requires_grad_(False)
    x = torch.randn(1, 8, 6, 7)
    first = layer(x)
    gathered = layer._gathered[1]
    assert torch.equal(layer(x), first) and layer._gathered[1] is gathered  # reused, same output
    assert torch.equal(first, subpixel.run_layer(layer, x))
    with torch.no_grad():
        layer.weight.mul_(2.0)  # in place: the cache must notice
    assert torch.allclose(layer(x), subpixel.run_layer(layer, x), atol=0, rtol=0)
    assert not torch.allclose(layer(x), first)
