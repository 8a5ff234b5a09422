import pytest
import torch

import lanfer
from lanfer.model import LANHead, fuse


@pytest.mark.parametrize("name", ["lan_resnet18", "resnet18"])
@pytest.mark.parametrize("size,grid", [(224, 7), (112, 4), (64, 2)])
def test_shapes_every_variant(name, size, grid):
    m = lanfer.create_model(name, num_classes=8).eval()
    x = torch.randn(2, 3, size, size)
    out = m(x, return_maps=True)
    assert out.logits.shape == (2, 8)
    assert out.features.shape == (2, 512, grid, grid)
    if name == "resnet18":
        assert out.attention is None
    else:
        assert out.attention.shape == (2, 1, grid, grid)
        assert (out.attention > 0).all() and (out.attention < 1).all()
    assert torch.allclose(m(x), out.logits)


@pytest.mark.parametrize("fusion", ["add", "concat", "average"])
def test_backward_finite(fusion):
    m = lanfer.create_model("lan_resnet18", num_classes=7, fusion=fusion)
    out = m(torch.randn(2, 3, 64, 64), return_maps=True)
    out.logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    assert m.head.body[0].weight.grad is not None


def test_fusion_by_hand():
    # F_o: (1, 2, 2, 2); F_m: (1, 1, 2, 2). Hand-computed GAPs.
    f_o = torch.tensor([[[[1., 2.], [3., 4.]], [[0., 0.], [2., 6.]]]])
    f_m = torch.tensor([[[[1., 0.], [0.5, 0.]]]])
    # F_a = F_o * F_m -> channel 0: [[1,0],[1.5,0]] mean 0.625; channel 1: [[0,0],[1,0]] mean 0.25
    g = torch.tensor([[2.5, 2.0]])
    a = torch.tensor([[0.625, 0.25]])
    assert torch.allclose(fuse(f_o, f_m, "add"), g + a)
    assert torch.allclose(fuse(f_o, f_m, "average"), (g + a) / 2)
    assert torch.allclose(fuse(f_o, f_m, "concat"), torch.cat([g, a], 1))
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse(f_o, f_m, "max")


def test_attention_multiplies_features():
    m = lanfer.create_model("lan_resnet18", num_classes=7, fusion="add").eval()
    x = torch.randn(1, 3, 64, 64)
    out = m(x, return_maps=True)
    f_a = out.features * out.attention  # F_a = F_o (.) F_m
    expected = out.features.mean((2, 3)) + f_a.mean((2, 3))
    assert torch.allclose(out.fused, expected, atol=1e-6)
    assert torch.allclose(out.logits, m.fc(expected), atol=1e-5)


def test_baseline_is_gap_fc():
    m = lanfer.create_model("resnet18", num_classes=7).eval()
    x = torch.randn(1, 3, 64, 64)
    out = m(x, return_maps=True)
    assert torch.allclose(out.logits, m.fc(out.features.mean((2, 3))), atol=1e-6)
    assert m.head is None and m.fc.in_features == 512


def test_head_widths_configurable():
    m = lanfer.create_model("lan_resnet18", head_widths=(32, 16, 8))
    convs = [l for l in m.head.body if isinstance(l, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 16, 8, 1]
    assert all(c.kernel_size == (3, 3) for c in convs)
    with pytest.raises(ValueError, match="3 hidden widths"):
        LANHead(512, (64, 32))


def test_bad_names():
    with pytest.raises(ValueError, match="unknown model"):
        lanfer.create_model("vit")
    with pytest.raises(TypeError, match="unknown arguments"):
        lanfer.create_model("resnet18", colour="red")
