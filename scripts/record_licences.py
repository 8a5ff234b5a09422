"""Put each shipped model's full terms in its record: its training data's licence and its backbone's origin and
licence (lanfer.pretrained.license_with_backbone, what training now records itself). Metadata only: the tensors
are copied as stored. Run once after a model is shipped from a run made before training recorded the backbone:

    python scripts/record_licences.py
"""
from __future__ import annotations

from lanfer.checkpoint import read_model_info
from lanfer.config import load_config
from lanfer.pretrained import SHIPPED, license_with_backbone
from lanfer.ship import record_license

# the config each shipped model was trained from (its record's command names it)
CONFIGS = {"lan_mobilenet_vggface2_ferplus_balanced": "ferplus_vggface2_lan",
           "lan_mobilenet_vggface2_ferplus": "ferplus_vggface2_lan"}


def main() -> None:
    for s in SHIPPED:
        if s.name not in CONFIGS:
            continue
        cfg = load_config(CONFIGS[s.name])
        terms = license_with_backbone(cfg.data.license, cfg.model.pretrained)
        if read_model_info(s.path).license != terms:
            record_license(s.path, terms)
            print(f"{s.name}: recorded {terms}")
        else:
            print(f"{s.name}: already records its terms")


if __name__ == "__main__":
    main()
