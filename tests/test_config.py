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
    ("data.augment=mirror", "data.augment='mirror' is not one of true, false, full, wild, flip, none"),
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


def test_num_classes_comes_from_the_data_unless_set():
    from lanfer.config import resolve_num_classes

    cfg = load_config(None)
    assert cfg.model.num_classes is None  # unset: the dataset decides
    resolve_num_classes(cfg, ["happy", "sad"])
    assert cfg.model.num_classes == 2
    cfg = load_config(None, ["model.num_classes=7"])
    with pytest.raises(ConfigError, match=r"the dataset has 2 classes \['happy', 'sad'\] but model.num_classes=7"):
        resolve_num_classes(cfg, ["happy", "sad"])
    resolve_num_classes(load_config(None, ["model.num_classes=2"]), ["happy", "sad"])  # an explicit match is fine
    with pytest.raises(ConfigError, match="model.num_classes=0 must be positive"):
        load_config(None, ["model.num_classes=0"])


@pytest.mark.parametrize("value,mode", [("true", "full"), ("false", "none"), ("flip", "flip"), ("none", "none"),
                                        ("wild", "wild")])
def test_augment_modes(value, mode):
    from lanfer.config import augment_mode

    cfg = load_config(None, [f"data.augment={value}"])
    assert augment_mode(cfg.data.augment) == mode


def test_flip_preset_only_mirrors():
    """``augment: flip`` gives the resized picture or its exact mirror image, nothing else."""
    import numpy as np
    import torch
    from PIL import Image

    from lanfer.data.presets import EvalPreset, TrainPreset

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    plain = EvalPreset(32, "none")(im)
    torch.manual_seed(0)
    outs = [TrainPreset(32, "none", augment="flip")(im) for _ in range(20)]
    mirrored = [torch.equal(o, plain.flip(-1)) for o in outs]
    same = [torch.equal(o, plain) for o in outs]
    assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored) and any(same)
    assert torch.equal(TrainPreset(32, "none", augment=False)(im), plain)
    with pytest.raises(ValueError, match="augment='mirror'"):
        TrainPreset(32, augment="mirror")


def test_wild_preset_moves_faces_further_than_full():
    """``augment: wild`` frames a face wider than ``full`` (its reason to exist: detector crops of photos are
    placed and scaled less tidily than FER2013's): the spread of a bright blob's centre, and of its size, over
    many draws is larger."""
    import numpy as np
    import torch
    from PIL import Image

    from lanfer.data.presets import TrainPreset

    yy, xx = np.mgrid[:48, :48]
    blob = (((yy - 24) ** 2 + (xx - 24) ** 2) < 64).astype(np.uint8) * 255  # a disc of radius 8 at the centre
    im = Image.fromarray(blob)

    def stats(mode):
        torch.manual_seed(0)
        pre = TrainPreset(48, "none", augment=mode, erasing=0.0, color="grayscale")
        centres, areas = [], []
        for _ in range(150):
            x = pre(im)[0].numpy()  # (48, 48) in [0, 1]
            m = x > 0.5 * x.max()
            ys, xs = np.nonzero(m)
            centres.append((ys.mean(), xs.mean()))
            areas.append(m.sum())
        c = np.array(centres)
        return np.hypot(c[:, 0] - 24, c[:, 1] - 24).std(), np.std(areas)

    full_shift, full_area = stats("full")
    wild_shift, wild_area = stats("wild")
    assert wild_shift > 1.5 * full_shift and wild_area > 1.5 * full_area, (full_shift, wild_shift, full_area, wild_area)
    assert stats("wild") == (wild_shift, wild_area)  # seeded: the same draws again


def test_a_bare_name_loads_the_packaged_config(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)  # no configs/ folder here: the name must resolve inside the package
    cfg = load_config("kdef_lan", ["train.epochs=2"])
    repo_copy = load_config(Path(__file__).resolve().parents[1] / "configs" / "kdef_lan.yaml", ["train.epochs=2"])
    assert cfg == repo_copy and cfg.data.name == "kdef" and cfg.train.epochs == 2
    assert load_config("kdef_lan.yaml") == load_config("kdef_lan")
    # a file in the working folder wins over the packaged config of the same name
    (tmp_path / "kdef_lan.yaml").write_text("model: {name: resnet18}\n")
    assert load_config("kdef_lan.yaml").model.name == "resnet18"


def test_an_unknown_name_lists_the_packaged_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="does not exist") as e:
        load_config("kdef_lam")
    assert "kdef_lan" in str(e.value) and "rafdb_resnet18" in str(e.value)
    # a folder path to a packaged name (a README command run outside a clone) points at the name
    with pytest.raises(ConfigError, match="pass just the name kdef_lan"):
        load_config("configs/kdef_lan.yaml")
