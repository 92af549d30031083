"""Base-model training: widening preserves the function, bf16 keeps rates fp32, runs resume."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.losses import rd_loss
from codec.models.gained import GainedMeanScaleHyperprior
from codec.training import train_default
from codec.training.session import data_name
from codec.training.widen import widen


def _small(seed: int = 0) -> GainedMeanScaleHyperprior:
    torch.manual_seed(seed)
    return GainedMeanScaleHyperprior(16, 24, (0.0018, 0.0067, 0.0483))


def test_widening_keeps_what_the_network_computes() -> None:
    narrow = _small()
    # make the GDNs non-trivial, as after training
    with torch.no_grad():
        for name, p in narrow.named_parameters():
            if "gamma" in name:
                p.add_(0.02 * torch.rand_like(p))
    wide = widen(narrow, 40)
    assert wide.N == 40 and wide.Nh == narrow.Nh == 16
    x, q = torch.rand(2, 3, 64, 64), torch.tensor([0.0, 1.5])
    narrow.eval(), wide.eval()
    with torch.no_grad():
        a, b = narrow(x, q), wide(x, q)
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)
    assert torch.allclose(a["likelihoods"]["y"], b["likelihoods"]["y"], atol=1e-6)
    # the new channels can learn: their outgoing weights get gradients at once
    wide.train()
    rd_loss(wide, x, q)["loss"].backward()
    assert wide.g_s[2].weight.grad[16:].abs().sum() > 0


def test_bf16_autocast_keeps_the_rate_terms_fp32() -> None:
    net = _small()
    x, q = torch.rand(2, 3, 64, 64), torch.tensor([0.0, 2.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, q)
    assert out["likelihoods"]["y"].dtype == torch.float32
    assert out["likelihoods"]["z"].dtype == torch.float32
    net.eval()  # rounding instead of noise: the two passes are comparable
    fp32 = rd_loss(net, x, q, "fp32")["bpp"]
    bf16 = rd_loss(net, x, q, "bf16")["bpp"]
    assert torch.isfinite(bf16).all()
    assert torch.allclose(fp32, bf16, rtol=0.1)


def test_learning_rate_warms_up_then_decays_to_two_percent() -> None:
    assert train_default.lr_at(0.0, 0, 1e-3, 10) == pytest.approx(1e-4)
    assert train_default.lr_at(0.0, 10, 1e-3, 10) == pytest.approx(1e-3)
    assert train_default.lr_at(0.5, 500, 1e-3, 10) == pytest.approx(1e-3 * (0.02 + 0.49))
    assert train_default.lr_at(1.0, 900, 1e-3, 10) == pytest.approx(2e-5)


def _write_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (72, 80, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_a_stopped_run_resumes_where_it_left_off(tmp_path: Path) -> None:
    datasets = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
    if not (datasets / "kodak").is_dir():
        pytest.skip("../shared/datasets is not on this machine (the run evaluates on the Kodak crops)")
    _write_images(tmp_path / "imgs", 3)
    common = ["--out", str(tmp_path / "run"), "--data", str(tmp_path / "imgs"), "--batch", "2", "--crop", "64"]
    common += ["--N", "8", "--M", "16", "--ckpt-every", "5", "--eval-every", "1000", "--warmup", "2"]
    train_default.main([*common, "--steps", "6", "--threads", "1"])
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert first["step"] == 6 and first["config"]["N"] == 8
    train_default.main([*common, "--steps", "10", "--threads", "1"])
    second = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert second["step"] == 10
    # each session is recorded for the model card: where it ran, from which step to which
    sessions = second["history"]
    assert [(h["start_step"], h["end_step"]) for h in sessions] == [(0, 6), (6, 10)]
    assert sessions[1]["device"].startswith("CPU") and sessions[1]["data"] == ["imgs"]
    with open(tmp_path / "run" / "log.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == []  # logged every 50 steps: none yet


def test_fp32_islands_keep_gdn_and_last_layers_fp32_under_autocast() -> None:
    net = _small()
    x = torch.rand(1, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net.mixed(net.g_a, x).dtype == torch.bfloat16  # off by default: all bf16
        net.fp32_islands = True
        assert net.mixed(net.g_a, x).dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(net.mixed(net.g_a, x), net.g_a(x))  # without autocast: the plain transform


def test_the_shipped_weights_and_the_retired_ones_both_code(tmp_path: Path) -> None:
    """The default is the universal N=96 model its card describes; the weights it replaced stay
    models (``default@f7213005a686e8ee``, ``default@4c7f48a0ed5f6775``, ``default@26eccb109a445d24``),
    so files made with them keep decoding."""
    from codec.coder import decode_image
    from codec.decoding import read_header
    from codec.pipeline import EncodeRequest, encode
    from codec.zoo import Registry

    reg = Registry()
    assert reg.get("default").hash.hex() == "ef73a2b6d0124c7c"  # the hash its model card states
    assert reg.get("default").net.N == 96
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    for name, hash16 in (
        ("default", "ef73a2b6d0124c7c"),
        ("default@f7213005a686e8ee", "f7213005a686e8ee"),
        ("default@4c7f48a0ed5f6775", "4c7f48a0ed5f6775"),
        ("default@26eccb109a445d24", "26eccb109a445d24"),
    ):
        out = encode(img, EncodeRequest(model=name, quality=3), registry=reg)
        assert str(read_header(out.data)["model_hash"]).startswith(hash16)
        assert decode_image(out.data, reg, bit_exact=True).rgb.shape == (64, 80, 3)


def test_the_candidate_weights_load_and_code() -> None:
    """The candidate next default (today's default trained on) is the file its card describes."""
    from codec.coder import decode_image
    from codec.pipeline import EncodeRequest, encode
    from codec.zoo import Registry, parse_checkpoint

    weights = Path(__file__).resolve().parents[1] / "codec" / "zoo" / "weights" / "candidates" / "default-next.pt"
    reg = Registry(checkpoints=[parse_checkpoint(f"next={weights}")])
    assert reg.get("next").hash.hex() == "63d0a39d5ea5f212"  # the hash its model card states
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    out = encode(img, EncodeRequest(model="next", quality=3), registry=reg)
    assert decode_image(out.data, reg, bit_exact=True).rgb.shape == (64, 80, 3)


def test_bad_init_and_widen_are_one_line_errors(tmp_path: Path) -> None:
    weights = Path(__file__).resolve().parents[1] / "codec" / "zoo" / "weights" / "default.pt"
    args = train_default.build_parser().parse_args(["--init", str(tmp_path / "none.pt")])
    with pytest.raises(SystemExit, match="is not a file"):
        train_default.build_model(args, torch.device("cpu"))
    args = train_default.build_parser().parse_args(["--init", str(weights), "--widen", "16"])
    with pytest.raises(SystemExit, match="narrower than N=96"):
        train_default.build_model(args, torch.device("cpu"))


def test_the_cards_continue_command_keeps_the_last_sessions_data(tmp_path: Path) -> None:
    """Continuing with other folders than the last session's would change the recipe (a universal
    base going on with photos only); the trainer's default folders need no ``--data``."""
    from codec.datasets import DEFAULT_TRAINING_FOLDERS
    from codec.training.model_card import continue_data

    (tmp_path / "natural-train").mkdir()
    (tmp_path / "screen").mkdir()  # an evaluation folder with a training folder's name
    (tmp_path / "graphics-train" / "screen").mkdir(parents=True)
    universal = {"device": "CPU", "end_step": 10, "end_wall": 1.0, "data": list(DEFAULT_TRAINING_FOLDERS)}
    old_names = {**universal, "end_step": 20, "data": ["natural-train", "screen"]}  # as older trainers recorded
    widened = {"event": "widened", "end_step": 20, "end_wall": 1.0}
    assert continue_data([universal], tmp_path) == ""
    assert continue_data([universal, old_names, widened], tmp_path) == (
        " --data ../shared/datasets/natural-train ../shared/datasets/graphics-train/screen"
    )
    assert continue_data([old_names, universal], tmp_path) == ""  # the last session decides
    photos = {**universal, "data": ["natural-train", "natural-train-extra"]}
    assert continue_data([photos], tmp_path).endswith("/natural-train ../shared/datasets/natural-train-extra")


def test_a_session_names_its_folders_relative_to_the_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "graphics-train" / "screen").mkdir(parents=True)
    monkeypatch.setenv("UDIC_DATASETS", str(tmp_path))
    assert data_name(tmp_path / "graphics-train" / "screen") == "graphics-train/screen"
    assert data_name(tmp_path.parent / "elsewhere") == "elsewhere"


def test_a_soap_run_resumes_with_its_own_optimiser(tmp_path: Path) -> None:
    """SOAP's state (per-dimension preconditioners and bases) survives the checkpoint, a resumed
    run keeps the optimiser it started with whatever the command line says, and the session record
    names optimiser and learning rate for the model card's continue command."""
    datasets = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
    if not (datasets / "kodak").is_dir():
        pytest.skip("../shared/datasets is not on this machine (the run evaluates on the Kodak crops)")
    from codec.training.model_card import continue_recipe

    _write_images(tmp_path / "imgs", 3)
    common = ["--out", str(tmp_path / "run"), "--data", str(tmp_path / "imgs"), "--batch", "2", "--crop", "64"]
    common += ["--N", "8", "--M", "16", "--eval-every", "1000", "--warmup", "2", "--threads", "1", "--lr", "3e-4"]
    train_default.main([*common, "--steps", "12", "--optimizer", "soap"])
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    conv = first["model"]["g_a.0.weight"]
    state = first["opt"]["state"]
    assert any("Q" in st and any(q.shape == (conv.shape[0],) * 2 for q in st["Q"]) for st in state.values())
    train_default.main([*common, "--steps", "16"])  # no --optimizer: the run's own, not Adam
    second = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert second["step"] == 16 and second["args"]["optimizer"] == "soap"
    assert not torch.equal(second["model"]["g_a.0.weight"], conv)
    assert [h["optimiser"] for h in second["history"]] == ["soap", "soap"]
    assert continue_recipe(second["history"]) == " --lr 0.0003 --warmup 100 --optimizer soap"
    assert continue_recipe([{"device": "CPU", "end_step": 1, "end_wall": 1.0}]) == " --lr 0.0001 --warmup 100"


def test_an_unknown_optimiser_is_refused() -> None:
    from codec.training.steps import make_optimiser

    with pytest.raises(ValueError, match="unknown optimiser 'sgd'"):
        make_optimiser("sgd", [torch.nn.Parameter(torch.zeros(2))], 1e-3)


def test_init_from_an_ended_runs_checkpoint_keeps_its_optimiser_state(tmp_path: Path) -> None:
    """``--init last.pt`` starts a new schedule (from the checkpoint's step, with the new lr) on the
    checkpoint's fp32 weights and Adam moments, so continuing does not restart them from zero."""
    datasets = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
    if not (datasets / "kodak").is_dir():
        pytest.skip("../shared/datasets is not on this machine (the run evaluates on the Kodak crops)")
    _write_images(tmp_path / "imgs", 3)
    common = ["--data", str(tmp_path / "imgs"), "--batch", "2", "--crop", "64", "--N", "8", "--M", "16"]
    common += ["--eval-every", "1000", "--warmup", "2", "--threads", "1"]
    train_default.main(["--out", str(tmp_path / "a"), *common, "--steps", "6"])
    ended = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    args = train_default.build_parser().parse_args(
        ["--out", str(tmp_path / "b"), "--init", str(tmp_path / "a" / "last.pt")]
    )
    trainer = train_default.load_trainer(args, torch.device("cpu"))
    assert trainer.step == 6 and trainer.schedule == {"step": 6, "wall": ended["wall"]}
    moments = [st["exp_avg_sq"] for st in trainer.opt.state_dict()["state"].values()]
    saved = [st["exp_avg_sq"] for st in ended["opt"]["state"].values()]
    assert len(moments) == len(saved) > 0 and all(torch.equal(a, b) for a, b in zip(moments, saved, strict=True))
    assert torch.equal(trainer.model.state_dict()["g_s.0.weight"], ended["model"]["g_s.0.weight"])
    # another optimiser than the checkpoint's: its weights, a fresh optimiser
    args = train_default.build_parser().parse_args(
        ["--out", str(tmp_path / "c"), "--init", str(tmp_path / "a" / "last.pt")]
    )
    args.optimizer = "soap"
    assert train_default.load_trainer(args, torch.device("cpu")).opt.state_dict()["state"] == {}
    train_default.main(
        ["--out", str(tmp_path / "b"), "--init", str(tmp_path / "a" / "last.pt"), *common, "--steps", "4"]
    )
    resumed = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert resumed["step"] == 10 and [(h["start_step"], h["end_step"]) for h in resumed["history"]] == [(0, 6), (6, 10)]
    widen = ["--out", str(tmp_path / "d"), "--init", str(tmp_path / "a" / "last.pt"), "--widen", "16"]
    with pytest.raises(SystemExit, match="--widen needs exported weights"):
        train_default.load_trainer(train_default.build_parser().parse_args(widen), torch.device("cpu"))


def test_auto_precision_trains_in_bf16_only_where_the_device_computes_it_natively(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a CPU without native bf16 (AVX2) emulated bf16 made a training step 16x slower than fp32:
    ``auto`` (the default) must then train in fp32, and an explicit ``bf16`` is kept but warned about."""
    cpu = torch.device("cpu")
    assert train_default.build_parser().parse_args([]).precision == "auto"
    monkeypatch.setattr(train_default, "bf16_is_fast", lambda device: False)  # the hardware probe, as on AVX2
    assert train_default.resolve_precision("auto", cpu) == "fp32"
    assert train_default.resolve_precision("bf16", cpu) == "bf16"
    assert "no native bf16" in capsys.readouterr().out
    assert train_default.resolve_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(train_default, "bf16_is_fast", lambda device: True)  # avx512_bf16 / AMX / CUDA bf16
    assert train_default.resolve_precision("auto", cpu) == "bf16"
    assert train_default.resolve_precision("fp32", cpu) == "fp32"
    assert capsys.readouterr().out == ""
