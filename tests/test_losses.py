import torch
import torch.nn.functional as F

from lanfer import lan_loss


def test_alpha_zero_is_plain_ce():
    torch.manual_seed(0)
    logits, y = torch.randn(4, 7), torch.tensor([0, 3, 6, 2])
    att = torch.rand(4, 1, 7, 7)
    gm = (torch.rand(4, 1, 7, 7) > 0.7).float()
    total, ce, bce = lan_loss(logits, y, att, gm, alpha=0.0)
    assert torch.equal(total, F.cross_entropy(logits, y))
    assert torch.equal(ce, total) and bce.item() == 0


def test_total_is_ce_plus_alpha_bce_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0])
    att = torch.tensor([0.9, 0.2, 0.6, 0.5]).view(1, 1, 2, 2)
    gm = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 2)
    import math
    ce_hand = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(1 / (1 + math.e))) / 2
    bce_hand = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.5)) / 4
    total, ce, bce = lan_loss(logits, y, att, gm, alpha=0.5)
    assert abs(ce.item() - ce_hand) < 1e-6
    assert abs(bce.item() - bce_hand) < 1e-6
    assert abs(total.item() - (ce_hand + 0.5 * bce_hand)) < 1e-6


def test_baseline_without_attention_and_soft_labels():
    logits = torch.randn(3, 8)
    soft = torch.softmax(torch.randn(3, 8), 1)
    total, ce, bce = lan_loss(logits, soft, None, None)
    assert torch.allclose(total, F.cross_entropy(logits, soft))


def test_shape_mismatch_is_refused():
    import pytest
    with pytest.raises(ValueError, match="same shape"):
        lan_loss(torch.randn(2, 7), torch.tensor([0, 1]), torch.rand(2, 1, 7, 7), torch.rand(2, 1, 4, 4))
