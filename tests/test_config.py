import pytest

from lanfer.config import ConfigError, load_config


def test_defaults_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  name: resnet18\ntrain:\n  epochs: 3\n")
    cfg = load_config(p, ["train.lr=0.01", "loss.alpha=0", "model.head_widths=[8,4,2]", "data.options.fold=3",
                          "train.max_steps=null"])
    assert cfg.model.name == "resnet18" and cfg.train.epochs == 3
    assert cfg.train.lr == 0.01 and cfg.loss.alpha == 0.0 and cfg.model.head_widths == [8, 4, 2]
    assert cfg.data.options == {"fold": 3} and cfg.train.max_steps is None
    assert cfg.train.batch_size == 64 and cfg.seed == 0  # paper defaults
    cfg.save(tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg


@pytest.mark.parametrize("override,match", [
    ("train.lrr=1", "unknown config key 'train.lrr'"),
    ("train.epochs=abc", "train.epochs: expected an integer"),
    ("model.fusion=max", "model.fusion='max' is not one of"),
    ("loss.alpha=-1", "loss.alpha=-1.0 must be >= 0"),
    ("nonsense", "not of the form key=value"),
])
def test_bad_overrides_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
