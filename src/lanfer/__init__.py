"""lanfer: pose-robust facial expression recognition with the Local Attention Network (LAN).

Public API::

    import lanfer
    model = lanfer.create_model("lan_resnet18", num_classes=7)
    out = model(x, return_maps=True)            # .logits, .features (F_o), .attention (F_m), .fused (f)
    guidance = lanfer.fit_guidance(F_o)    # K=2 clustering per position; guidance.assign(F_o)
    total, ce, bce = lanfer.lan_loss(out.logits, y, out.attention, guidance.assign(out.features))
"""
from .guidance import Guidance, fit_guidance
from .losses import lan_loss
from .model import LANOutput, create_model

__version__ = "0.1.0"
__all__ = ["create_model", "LANOutput", "fit_guidance", "Guidance", "lan_loss", "__version__"]
