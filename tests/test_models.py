"""Structure and shape tests of the DRNN and the discriminator (paper, Figs. 1-2)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch is in the [train] extra")
from torch import nn  # noqa: E402

from training.models import DRNN, Discriminator, ResBlock, drnn_flops  # noqa: E402


@pytest.fixture(scope="module")
def drnn() -> DRNN:
    torch.manual_seed(0)
    return DRNN()


@pytest.mark.parametrize("shape", [(97, 131), (64, 64), (33, 20)])
def test_drnn_keeps_any_size(drnn: DRNN, shape: tuple[int, int]) -> None:
    x = torch.rand(2, 1, *shape)
    drnn.eval()
    with torch.no_grad():
        y = drnn(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_drnn_structure(drnn: DRNN) -> None:
    stem_conv = drnn.stem[0]
    assert isinstance(stem_conv, nn.Conv2d)
    assert stem_conv.kernel_size == (7, 7) and stem_conv.in_channels == 1 and stem_conv.out_channels == 64
    assert isinstance(drnn.stem[1], nn.BatchNorm2d) and isinstance(drnn.stem[2], nn.ReLU)
    blocks = [m for m in drnn.blocks if isinstance(m, ResBlock)]
    assert len(blocks) == 6 == len(drnn.blocks)
    for block in blocks:
        body_convs = [m for m in block.body.modules() if isinstance(m, nn.Conv2d)]
        assert len(body_convs) == 3
        assert all(c.kernel_size == (3, 3) and c.in_channels == c.out_channels == 64 for c in body_convs)
        assert sum(isinstance(m, nn.BatchNorm2d) for m in block.body.modules()) == 3
        assert sum(isinstance(m, nn.ReLU) for m in block.body.modules()) == 3
        assert isinstance(block.shortcut, nn.Conv2d)
        assert block.shortcut.kernel_size == (1, 1) and block.shortcut.out_channels == 64
    assert isinstance(drnn.head, nn.Conv2d) and drnn.head.out_channels == 1
    all_convs = [m for m in drnn.modules() if isinstance(m, nn.Conv2d)]
    assert len(all_convs) == 1 + 6 * (3 + 1) + 1


def test_weighted_shortcut_is_used() -> None:
    """Zeroing the 1x1 shortcut must change the block's output: it is on the data path."""
    torch.manual_seed(1)
    block = ResBlock().eval()
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        before = block(x)
        block.shortcut.weight.zero_()
        block.shortcut.bias.zero_()
        after = block(x)
        assert not torch.allclose(before, after)
        assert torch.allclose(after, block.body(x))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_both_models_run_in_train_and_eval(mode: str) -> None:
    torch.manual_seed(2)
    g, d = DRNN(), Discriminator()
    for m in (g, d):
        m.train(mode == "train")
    x = torch.rand(2, 1, 48, 40)
    y = g(x)
    p = d(y)
    assert y.shape == x.shape and p.shape == (2, 1)
    if mode == "train":
        p.mean().backward()
        assert g.stem[0].weight.grad is not None and torch.isfinite(g.stem[0].weight.grad).all()


@pytest.mark.parametrize("size", [(128, 128), (97, 131)])
def test_discriminator_one_probability_per_image(size: tuple[int, int]) -> None:
    torch.manual_seed(3)
    d = Discriminator().eval()
    with torch.no_grad():
        p = d(torch.rand(3, 1, *size))
    assert p.shape == (3, 1)
    assert bool(((p > 0) & (p < 1)).all())


def test_discriminator_keeps_the_signal_through_its_layers() -> None:
    """He initialisation: the last features of the default D keep the input's scale and differ
    between images, so its output does not start out the same for every image."""
    torch.manual_seed(4)
    d = Discriminator()
    x = torch.rand(8, 1, 64, 64)
    with torch.no_grad():
        feats = d.features(x)
        logits = d.logits(x)
    assert 0.1 < float(feats.std() / x.std()) < 10.0
    assert float(logits.std()) > 1e-3
    assert all(float(m.bias.abs().max()) == 0.0 for m in d.features if isinstance(m, nn.Conv2d))


def test_discriminator_layout_default_and_custom() -> None:
    d = Discriminator()
    convs = [m for m in d.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert all(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in d.features if not isinstance(m, nn.Conv2d))
    small = Discriminator(layers=("8", "16s"))
    assert small.fc.in_features == 16
    with pytest.raises(ValueError, match="bad Discriminator layer spec"):
        Discriminator(layers=("8x",))


def test_drnn_rejects_wrong_channels(drnn: DRNN) -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        drnn(torch.rand(1, 3, 16, 16))


def test_flops_match_parameter_count(drnn: DRNN) -> None:
    """Conv weights x 2 x pixels must equal the FLOP formula (bias/BN excluded)."""
    weights = sum(m.weight.numel() for m in drnn.modules() if isinstance(m, nn.Conv2d))
    assert drnn_flops(10, 20) == pytest.approx(2 * 10 * 20 * weights)
    assert drnn_flops(256, 256) == pytest.approx(91.2e9, rel=0.01)
