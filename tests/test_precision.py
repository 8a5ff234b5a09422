"""train.amp (auto / bf16 / fp16 / none, and older configs' true/false), the GradScaler, evaluation under the
run's autocast, and the precision recorded in the log, metrics.jsonl and metrics.json."""
from __future__ import annotations

import json
import os

import pytest
import torch

import lanfer
import lanfer.precision as precision
from lanfer.config import ConfigError, config_from_dict, load_config
from lanfer.distributed import seed_everything
from lanfer.evaluate import predict_loader
from lanfer.train import train


def test_old_bool_configs_keep_their_meaning_and_bad_values_are_named():
    assert config_from_dict({"train": {"amp": True}}).train.amp == "bf16"  # what `amp: true` ran before
    assert config_from_dict({"train": {"amp": False}}).train.amp == "none"
    assert load_config(None, ["train.amp=true"]).train.amp == "bf16"
    assert load_config(None, ["train.amp=fp16"]).train.amp == "fp16"
    assert config_from_dict({}).train.amp == "auto"
    with pytest.raises(ConfigError, match=r"train.amp='fp8' is not one of auto, bf16, fp16, none"):
        load_config(None, ["train.amp=fp8"])


def test_auto_follows_the_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_info", lambda: ("Xeon", frozenset({"avx512f", "amx_bf16", "amx_tile"})))
    assert precision.resolve_precision("auto", cpu) == ("bf16", "auto: this CPU has AMX-BF16")
    monkeypatch.setattr(precision, "cpu_info", lambda: ("EPYC", frozenset({"avx2", "avx512_bf16"})))
    assert precision.resolve_precision("auto", cpu)[0] == "fp32"  # avx512_bf16 alone: not measured faster
    assert precision.resolve_precision("bf16", cpu)[0] == "bf16"  # an explicit choice is kept
    assert precision.resolve_precision("none", cpu)[0] == "fp32"
    assert "amx_bf16 no, avx512_bf16 yes" in precision.hardware_line()


def test_cpu_info_reads_this_machine():
    text = open("/proc/cpuinfo").read()
    model, flags = precision.cpu_info()
    assert model in text and ("amx_bf16" in flags) == (" amx_bf16" in text)


def test_evaluation_runs_under_the_given_autocast():
    torch.manual_seed(0)
    model = lanfer.create_model("resnet18", num_classes=3).eval()
    seen = []
    model.fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = torch.randn(6, 3, 32, 32)
    loader = [(x, torch.tensor([0, 1, 2, 0, 1, 2]), [{}] * 6)]
    _, _, p32, _ = predict_loader(model, loader, precision="fp32")
    _, _, p16, _ = predict_loader(model, loader, precision="bf16")
    assert seen == [torch.float32, torch.bfloat16]
    assert torch.allclose(torch.as_tensor(p16), torch.as_tensor(p32), atol=0.05)  # bf16 has ~3 digits


def _cfg(root, amp, **train):
    return config_from_dict({
        "model": {"name": "resnet18"},
        "data": {"name": "imagefolder", "root": str(root), "image_size": train.pop("image_size", 32), "num_workers": 0, "augment": False},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.01, "progress": False, "channels_last": False,
                  "amp": amp, **train}})


def test_fp16_trains_with_a_grad_scaler_and_every_record_names_the_precision(tiny_folder, tmp_path, capsys):
    """fp16 autocast runs on the CPU in torch 2.14; the scaler's state travels in last.ckpt for --resume."""
    from lanfer.checkpoint import load_training_state

    metrics = train(_cfg(tiny_folder, "fp16", max_steps=2), out=tmp_path / "run")
    assert metrics["precision"] == "fp16"
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["precision"] == "fp16"
    out = capsys.readouterr().out
    assert "precision: fp16 (train.amp=fp16)" in out and "img/s (fp16)" in out
    scale = load_training_state(tmp_path / "run" / "last.ckpt")["scaler"]["scale"]
    assert scale in [2.0 ** k for k in range(14, 17)]  # 2^16, halved on each of at most 2 overflowing steps


def _one_step(amp: str, scaler=None) -> dict[str, torch.Tensor]:
    from lanfer.train import train_one_epoch

    seed_everything(0)
    model = lanfer.create_model("resnet18", num_classes=3)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 3
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    cfg = _cfg(".", amp)
    record, _ = train_one_epoch(model, [(x, y, [{}] * 8)], opt, sched, cfg, torch.device("cpu"), None, None,
                                epoch=0, step=0, progress=False, scaler=scaler)
    assert record["precision"] == {"none": "fp32"}.get(amp, amp)
    return {k: v for k, v in model.state_dict().items() if "running" not in k and v.is_floating_point()}


def test_an_fp16_step_is_the_fp32_step_up_to_rounding():
    """The scaler multiplies the loss before backward and divides the gradients before the step."""
    seed_everything(0)
    init = {k: v for k, v in lanfer.create_model("resnet18", num_classes=3).state_dict().items()}
    w32, wb16 = _one_step("none"), _one_step("bf16")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)  # low enough that the first step cannot overflow
    w16 = _one_step("fp16", scaler)
    assert scaler.get_scale() == 2.0 ** 8  # the step was taken, not skipped
    step = {name: torch.cat([(w[k] - init[k]).flatten() for k in w32])
            for name, w in (("fp32", w32), ("fp16", w16), ("bf16", wb16))}
    assert step["fp32"].norm() > 1e-3
    # fp16 keeps 3 more mantissa bits than bf16: a correctly unscaled fp16 step lies nearer the fp32 one
    assert (step["fp16"] - step["fp32"]).norm() < (step["bf16"] - step["fp32"]).norm() < 0.5 * step["fp32"].norm()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LANFER_TEST_COMPILE"),
                    reason="torch.compile's first CPU step takes minutes (7 on 2 loaded cores); set LANFER_TEST_COMPILE=1")
def test_compiled_training_matches_eager(tiny_folder, tmp_path):
    """train.compile: the compiled forward/backward takes the eager steps, up to float reassociation (measured:
    the 2-step update differs by 1.3% of its norm at 64 px, against 1e-5 between two eager memory layouts)."""
    from lanfer.checkpoint import load_training_state

    seed_everything(0)
    init = lanfer.create_model("resnet18", num_classes=3).state_dict()
    keys = [k for k in init if "running" not in k and init[k].is_floating_point()]
    update = {}
    for c in (False, True):
        train(_cfg(tiny_folder, "none", compile=c, max_steps=2, image_size=64), out=tmp_path / str(c))
        w = load_training_state(tmp_path / str(c) / "last.ckpt")["model"]
        update[c] = torch.cat([(w[k] - init[k]).flatten() for k in keys])
    assert update[False].norm() > 1e-3
    assert (update[True] - update[False]).norm() < 0.05 * update[False].norm()
