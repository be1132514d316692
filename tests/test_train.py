"""The trainer end to end on the quick config: all phases, exact resume, Ctrl-C, checkpoints, bad input."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is in the [train] extra")

from training.checkpoint import CKPT_FORMAT, CheckpointError, atomic_save, export_generator, load_checkpoint  # noqa: E402
from training.config import ConfigError, load_config  # noqa: E402
from training.data import DataError  # noqa: E402
from training.models import DRNN  # noqa: E402
from training.runsetup import RunOptions, resolve_config  # noqa: E402
from training.sim import write_dataset  # noqa: E402
from training.train import main  # noqa: E402
from training.trainer import train  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sim")
    write_dataset(root, count=3, size=(48, 64), seed=5, paired=True, eval_count=3, jitter=1.0, twins=3,
                  progress=False)
    return root


def _opts(data: Path, out: Path, **kw) -> RunOptions:
    return RunOptions(out=out, low=data / "low", high=data / "high", progress=False, **kw)


def _generator(path: Path) -> dict:
    return load_checkpoint(path)["generator"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def full_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full")
    result = train(load_config("quick"), _opts(data, out))
    assert result.status == "finished" and result.generator is not None
    return out


def test_quick_config_runs_every_phase_and_writes_outputs(full_run: Path) -> None:
    cfg = load_config("quick")
    assert (full_run / "generator.pt").is_file()
    for p in cfg.phases:
        assert (full_run / "checkpoints" / f"after_{p.name}.pt").is_file()
    text = (full_run / "config.yaml").read_text()
    assert text.startswith("# code_version: ") and load_config(full_run / "config.yaml") == cfg
    log = (full_run / "log.csv").read_text()
    for name in ("g_pretrain", "d_pretrain", "gan", "d_loss", "adv", "ms_ssim"):
        assert name in log
    samples = sorted((full_run / "samples").glob("*.png"))
    assert {s.name.split("_0")[0] for s in samples} == {"g_pretrain", "d_pretrain", "gan"}
    assert cv2.imread(str(samples[0]), cv2.IMREAD_GRAYSCALE).shape[0] > 0
    assert any((full_run / "tb").iterdir())


def test_checkpoint_contents_and_generator_export(full_run: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(full_run / "checkpoints" / "last.pt")
    assert ckpt["format"] == CKPT_FORMAT
    for key in ("discriminator", "discriminator_config", "opt_g", "opt_d", "pool", "rng", "config", "code_version"):
        assert key in ckpt
    assert ckpt["phase"] == 3 and ckpt["config"]["phases"][2]["kind"] == "gan"
    slim_path = export_generator(full_run / "checkpoints" / "last.pt", tmp_path / "g.pt")
    slim = load_checkpoint(slim_path)
    assert "discriminator" not in slim and "opt_g" not in slim
    assert slim_path.stat().st_size < (full_run / "checkpoints" / "last.pt").stat().st_size / 2
    g = DRNN(**slim["generator_config"])
    g.load_state_dict(slim["generator"])
    assert _same(g.state_dict(), ckpt["generator"])
    # the run's own generator file names the last phase's last step, not the "next unit" 0 past it
    cfg = load_config("quick")
    final = load_checkpoint(full_run / "generator.pt")
    assert ckpt["step"] == 0 and (final["phase_name"], final["step"]) == ("gan", cfg.phases[-1].steps()) != ("gan", 0)
    assert "discriminator" not in final and _same(final["generator"], ckpt["generator"])
    assert slim["step"] == final["step"]  # exporting the finished last.pt by hand says the same


def test_training_changes_the_generator(full_run: Path) -> None:
    torch.manual_seed(load_config("quick").seed)
    cfg = load_config("quick").model
    init = DRNN(cfg.width, cfg.blocks, cfg.convs_per_block, cfg.stem_kernel, cfg.head_kernel).state_dict()
    trained = _generator(full_run / "generator.pt")
    assert not torch.equal(init["stem.0.weight"], trained["stem.0.weight"])


@pytest.mark.parametrize("stop_after", [3, 9, 11])  # inside g_pretrain, at the d_pretrain/gan boundary, inside gan
def test_resume_after_stop_gives_identical_weights(data: Path, full_run: Path, tmp_path: Path, stop_after: int) -> None:
    cfg = load_config("quick")
    first = train(cfg, _opts(data, tmp_path, max_steps=stop_after))
    assert first.status == "stopped" and first.units == stop_after
    assert first.generator is None
    second = train(cfg, _opts(data, tmp_path, resume=True))
    assert second.status == "finished"
    assert second.units == sum(p.steps() for p in cfg.phases) - stop_after
    assert _same(_generator(tmp_path / "generator.pt"), _generator(full_run / "generator.pt"))
    d_a = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["discriminator"]
    d_b = load_checkpoint(full_run / "checkpoints" / "last.pt")["discriminator"]
    assert _same(d_a, d_b)


def test_resume_extends_a_finished_run(data: Path, full_run: Path, tmp_path: Path) -> None:
    """A finished run resumed with a longer last phase runs only the added units."""
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    opts = _opts(data, run, resume=True)
    same = train(resolve_config("quick", opts), opts)
    assert same.status == "finished" and same.units == 0
    assert _same(_generator(run / "generator.pt"), _generator(full_run / "generator.pt"))
    longer = resolve_config("quick", opts, ("phases.gan.iterations=5",))
    more = train(longer, opts)
    assert more.status == "finished" and more.units == 5 - load_config("quick").phases[2].iterations
    assert not _same(_generator(run / "generator.pt"), _generator(full_run / "generator.pt"))
    units = sum(p.steps() for p in longer.phases)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["unit"] == units
    assert f"gan,5,{units}," in (run / "log.csv").read_text()  # phase step 5 logged


def test_supervised_phase_on_pairs(data: Path, tmp_path: Path) -> None:
    cfg = load_config("quick", ["phases.0.kind=supervised", "phases.0.weights={l1: 1.0, hist: 0.5, spectrum: 0.01}",
                                "phases.0.spectrum_window=hann", "phases.1.epochs=1", "phases.gan.iterations=1"])
    result = train(cfg, RunOptions(out=tmp_path, low=data / "low", high=data / "high", pairs=data / "eval", progress=False))
    assert result.status == "finished"
    log = (tmp_path / "log.csv").read_text()
    assert ",spectrum," in log and ",hist," in log  # only the supervised phase has these terms here


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_every_phase_on_cuda_with_amp_and_resume(data: Path, tmp_path: Path) -> None:
    """The quick config on one GPU (bfloat16 autocast), stopped and resumed; the result runs on the CPU."""
    cfg = load_config("quick")
    assert cfg.amp
    assert train(cfg, _opts(data, tmp_path, device="cuda", max_steps=9)).status == "stopped"
    second = train(cfg, _opts(data, tmp_path, device="cuda", resume=True))
    assert second.status == "finished" and second.units == sum(p.steps() for p in cfg.phases) - 9
    trained = _generator(tmp_path / "generator.pt")
    assert all(v.isfinite().all() for v in trained.values() if v.is_floating_point())
    m = cfg.model
    g = DRNN(m.width, m.blocks, m.convs_per_block, m.stem_kernel, m.head_kernel).eval()
    g.load_state_dict(trained)
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu, gpu = g(x), g.cuda()(x.cuda()).cpu()
    assert (cpu - gpu).abs().max() < 1e-3


def test_pairs_from_several_folders_one_per_simulator_model(data: Path, tmp_path: Path) -> None:
    from training.batches import load_pairs
    from training.data import DataError
    from training.train import parse_args

    write_dataset(tmp_path / "pts", count=0, size=(48, 64), seed=6, paired=True, eval_count=2, model="points",
                  progress=False)
    xs, ys = load_pairs([data / "eval", tmp_path / "pts" / "eval"])
    assert len(xs.images) == len(ys.images) == 5
    assert np.array_equal(xs.images[3], cv2.imread(str(tmp_path / "pts" / "eval" / "x_000.png"), cv2.IMREAD_UNCHANGED))
    assert parse_args(["--pairs", "a", "b", "--out", "o"]).pairs == (Path("a"), Path("b"))
    with pytest.raises(DataError, match="no folder"):
        load_pairs([])


def _twin_changes(g_path: Path, twins: Path) -> tuple[float, float]:
    """``(mean |(G(x_b) - G(x_a)) - (y_b - y_a)|, mean |G(x_b) - G(x_a)|)`` over the twins' whole frames
    (G in evaluation mode)."""
    from training.batches import load_twins
    from training.checkpoint import load_generator

    g, t = load_generator(g_path).eval(), load_twins(twins)
    x_a, y_a, x_b, y_b = (torch.stack([torch.from_numpy(im).float().div(255)[None] for im in s.images])
                          for s in (t.x_a, t.y_a, t.x_b, t.y_b))
    with torch.no_grad():
        change = g(x_b) - g(x_a)
    return float((change - (y_b - y_a)).abs().mean()), float(change.abs().mean())


def test_temporal_term_makes_the_output_change_as_the_high_probe_does(data: Path, tmp_path: Path) -> None:
    """``temporal`` on the twins: from a generator that passes its input's speckle changes on (trained
    to reproduce its input), a fine-tune with the term brings the change of G's output between a
    twin's two frames closer to the high probe's change than the same fine-tune without it (here by
    changing less: the tiny model cannot predict the high probe's speckle); the term is logged, and
    a run stopped and resumed mid-phase replays the uninterrupted one (twin crops drawn from the step)."""
    copier = load_config("quick", ["phases.g_pretrain.lr_g=1e-2", "phases.g_pretrain.epochs=8"])
    train(copier, _opts(data, tmp_path / "copier", max_steps=32))
    start = tmp_path / "copier" / "checkpoints" / "last.pt"
    sets = ["phases.g_pretrain.lr_g=3e-3", "phases.g_pretrain.freeze_bn=true", "phases.d_pretrain.epochs=1",
            "phases.gan.iterations=1"]
    changes = {}
    for weight in (0.0, 5.0):
        cfg = load_config("quick", [*sets, f"phases.g_pretrain.weights={{l1: 0.1, temporal: {weight}}}"])
        train(cfg, _opts(data, tmp_path / str(weight), max_steps=8, init=start, twins=data / "twins"))
        changes[weight] = _twin_changes(tmp_path / str(weight) / "checkpoints" / "last.pt", data / "twins")
    (misfit_without, change_without), (misfit_with, change_with) = changes[0.0], changes[5.0]
    assert misfit_with < 0.9 * misfit_without and change_with < 0.5 * change_without, changes
    assert ",temporal," in (tmp_path / "5.0" / "log.csv").read_text()
    assert ",temporal," not in (tmp_path / "0.0" / "log.csv").read_text()
    cfg = load_config("quick", [*sets, "phases.g_pretrain.weights={l1: 0.1, temporal: 1.0}",
                                "phases.gan.weights={adv: 1.0, l1: 0.5, temporal: 1.0}"])
    whole = train(cfg, _opts(data, tmp_path / "whole", init=start, twins=data / "twins"))
    train(cfg, _opts(data, tmp_path / "split", max_steps=3, init=start, twins=data / "twins"))
    rest = train(cfg, _opts(data, tmp_path / "split", resume=True, twins=data / "twins"))
    assert whole.status == rest.status == "finished"
    assert _same(_generator(tmp_path / "split" / "generator.pt"), _generator(tmp_path / "whole" / "generator.pt"))


def test_load_twins_refuses_misaligned_twins(data: Path, tmp_path: Path) -> None:
    """A twin missing from b/, or a b/ frame of another size than its a/ frame, is named before training."""
    from training.batches import load_twins
    from training.data import DataError

    assert len(load_twins(data / "twins").x_b) == 3
    short = tmp_path / "short"
    shutil.copytree(data / "twins", short)
    for name in ("x_002.png", "y_002.png"):
        (short / "b" / name).unlink()
    with pytest.raises(DataError, match="3 pairs in a/ but 2 in b/"):
        load_twins(short)
    resized = tmp_path / "resized"
    shutil.copytree(data / "twins", resized)
    for name in ("x_001.png", "y_001.png"):
        cv2.imwrite(str(resized / "b" / name), np.zeros((40, 40), np.uint8))
    with pytest.raises(DataError, match=r"twin #1 is \(48, 64\) in a/ but \(40, 40\) in b/"):
        load_twins(resized)


def test_cli_runs_and_reports_bad_input(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--config", "quick", "--no-progress", "--set", "phases.gan.iterations=1"]
    assert main([*common, "--low", str(data / "low"), "--high", str(data / "high"), "--out", str(tmp_path / "ok")]) == 0
    assert "finished" in capsys.readouterr().out

    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--low", str(tmp_path / "missing"), "--high", str(data / "high")], "missing"),
        (["--low", str(empty), "--high", str(data / "high")], "empty"),
        (["--low", str(data / "low")], "--high"),
        (["--low", str(data / "low"), "--high", str(data / "high"), "--set", "phases.0.crop=80"], "smaller than the 80x80"),
        (["--low", str(data / "low"), "--high", str(data / "high"), "--set", "phases.0.lr_g=abc"], "phases[0].lr_g"),
        (["--low", str(data / "low"), "--high", str(data / "high"), "--set", "phases.0.kind=supervised"], "--pairs"),
        (["--low", str(data / "low"), "--high", str(data / "high"), "--set", "phases.0.weights={temporal: 1.0}"],
         "--twins: required by the temporal loss term of phase(s) g_pretrain"),
        (["--low", str(data / "low"), "--high", str(data / "high"), "--twins", str(data / "eval"),
          "--set", "phases.0.weights={temporal: 1.0}"], "no a/ or b/ folder of twins"),
    ]
    for extra, culprit in cases:
        assert main([*common, *extra, "--out", str(tmp_path / "bad")]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and culprit in err and err.count("\n") == 1, err


def test_resume_refuses_corrupt_and_foreign_checkpoints(data: Path, full_run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    last = tmp_path / "checkpoints" / "last.pt"
    args = ["--config", "quick", "--no-progress", "--low", str(data / "low"), "--high", str(data / "high"),
            "--out", str(tmp_path), "--resume"]
    last.parent.mkdir(parents=True)
    last.write_bytes((full_run / "checkpoints" / "last.pt").read_bytes()[:5000])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(last) in err and "corrupt" in err
    torch.save({"format": "someone-else-1", "state": torch.zeros(2)}, last)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(last) in err and "not a usdespeckle-ckpt-1 file" in err
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_cli_resume_uses_the_stored_config(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--no-progress", "--low", str(data / "low"), "--high", str(data / "high"), "--out", str(tmp_path)]
    assert main(["--config", "quick", *common, "--max-steps", "2"]) == 0
    assert main([*common, "--resume", "--set", "phases.gan.iterations=1"]) == 0  # --config defaults to paper: ignored
    assert "finished after 9 units" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "generator.pt")["config"]["phases"][2]["iterations"] == 1
    assert main([*common, "--resume"]) == 0  # nothing left: said so, not "after 0 units"
    assert capsys.readouterr().out.startswith("already finished, no unit left to run")


def test_init_starts_from_a_generator_and_checks_its_shape(data: Path, full_run: Path, tmp_path: Path) -> None:
    cfg = load_config("quick", ["phases.g_pretrain.lr_g=1e-9"])  # a negligible step keeps G near its start
    train(cfg, _opts(data, tmp_path / "a", max_steps=1, init=full_run / "generator.pt"))
    start, after = _generator(full_run / "generator.pt"), _generator(tmp_path / "a" / "checkpoints" / "last.pt")
    assert torch.allclose(start["stem.0.weight"], after["stem.0.weight"], atol=1e-6)
    with pytest.raises(ConfigError, match="--init .* is not the config's model"):
        train(load_config("quick", ["model.width=4"]), _opts(data, tmp_path / "b", init=full_run / "generator.pt"))


def test_freeze_bn_keeps_the_running_statistics_while_weights_learn(data: Path, full_run: Path, tmp_path: Path) -> None:
    """A fine-tune with ``freeze_bn`` leaves every batch-norm running mean and variance as the
    start generator had them; without it three steps move them.  Both change the conv weights."""
    start = _generator(full_run / "generator.pt")
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert stats
    after = {}
    for frozen in (True, False):
        cfg = load_config("quick", [f"phases.g_pretrain.freeze_bn={str(frozen).lower()}"])
        out = tmp_path / str(frozen)
        train(cfg, _opts(data, out, max_steps=3, init=full_run / "generator.pt"))
        after[frozen] = _generator(out / "checkpoints" / "last.pt")
        assert not torch.equal(start["stem.0.weight"], after[frozen]["stem.0.weight"])
    assert all(torch.equal(start[k], after[True][k]) for k in stats)
    assert not any(torch.equal(start[k], after[False][k]) for k in stats)


def _distance_to(start: Path, run: Path, data: Path) -> float:
    """Mean |G(x) - G0(x)| over the low set's images, both generators in evaluation mode."""
    from training.checkpoint import load_generator

    g0, g = load_generator(start).eval(), load_generator(run / "checkpoints" / "last.pt").eval()
    x = torch.stack([torch.from_numpy(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)).float().div(255)[None]
                     for f in sorted((data / "low").glob("*.png"))])
    with torch.no_grad():
        return float((g(x) - g0(x)).abs().mean())


def test_anchor_holds_a_fine_tune_near_its_start_and_resumes_exactly(data: Path, full_run: Path, tmp_path: Path) -> None:
    """The ``anchor`` term keeps G's output closer to the starting generator's than the same
    fine-tune without it (``freeze_bn``: both as deployed); a run stopped and resumed mid-phase
    compares with the phase's start (stored in the checkpoint), not with G as resumed, and
    replays the uninterrupted run; without ``freeze_bn`` the term starts at 0."""
    start = full_run / "generator.pt"
    sets = ["phases.g_pretrain.lr_g=3e-3", "phases.g_pretrain.freeze_bn=true", "phases.d_pretrain.epochs=1",
            "phases.gan.iterations=1"]
    moved = {}
    for weight in (0.0, 20.0):
        cfg = load_config("quick", [*sets, f"phases.g_pretrain.weights={{l1: 1.0, anchor: {weight}}}"])
        train(cfg, _opts(data, tmp_path / str(weight), max_steps=8, init=start))
        moved[weight] = _distance_to(start, tmp_path / str(weight), data)
    assert 0 < moved[20.0] < 0.5 * moved[0.0], moved
    assert ",anchor," in (tmp_path / "20.0" / "log.csv").read_text()
    assert ",anchor," not in (tmp_path / "0.0" / "log.csv").read_text()
    cfg = load_config("quick", [*sets, "phases.g_pretrain.weights={l1: 1.0, anchor: 20.0}"])
    whole = train(cfg, _opts(data, tmp_path / "whole", init=start))
    train(cfg, _opts(data, tmp_path / "split", max_steps=3, init=start))
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["anchor"] is not None
    rest = train(cfg, _opts(data, tmp_path / "split", resume=True))
    assert whole.status == rest.status == "finished"
    assert _same(_generator(tmp_path / "split" / "generator.pt"), _generator(tmp_path / "whole" / "generator.pt"))
    assert load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["anchor"] is None  # the gan phase has none
    # G0 normalises as G does (minibatch statistics here), so before G moves the term is 0.
    still = load_config("quick", [*sets, "phases.g_pretrain.lr_g=1e-12", "phases.g_pretrain.freeze_bn=false",
                                  "phases.g_pretrain.weights={l1: 1.0, anchor: 1.0}"])
    train(still, _opts(data, tmp_path / "still", max_steps=2, init=start))
    (first,) = [float(r.split(",")[-1]) for r in (tmp_path / "still" / "log.csv").read_text().splitlines() if ",anchor," in r]
    assert first < 1e-6


def test_finetune_config_leaves_g_alone_until_the_anchored_gan(data: Path, full_run: Path, tmp_path: Path) -> None:
    """finetune.yaml, cut to the quick model's size: D pretraining does not touch G, the GAN phase
    then trains it with the anchor term."""
    small = ['model={width: 8, blocks: 2, convs_per_block: 3, stem_kernel: 7, head_kernel: 3}',
             'discriminator.layers=["8", "8s", "16s"]', "ms_ssim.sigmas=[0.5, 1.0, 2.0, 4.0]", "threads=1",
             "phases.d_pretrain.crop=32", "phases.d_pretrain.d_crop=24", "phases.d_pretrain.d_batch=4",
             "phases.d_pretrain.samples=8", "phases.d_pretrain.epochs=1", "phases.gan.crop=32", "phases.gan.d_crop=24",
             "phases.gan.batch=2", "phases.gan.d_batch=4", "phases.gan.iterations=2", "phases.gan.g_steps=2",
             "phases.gan.pool_size=4", "phases.gan.lr_g=1e-4"]
    result = train(load_config("finetune", small), _opts(data, tmp_path, init=full_run / "generator.pt"))
    assert result.status == "finished"
    start = _generator(full_run / "generator.pt")
    assert _same(_generator(tmp_path / "checkpoints" / "after_d_pretrain.pt"), start)
    assert not torch.equal(_generator(tmp_path / "generator.pt")["stem.0.weight"], start["stem.0.weight"])
    assert any(r.startswith("gan,") and ",anchor," in r for r in (tmp_path / "log.csv").read_text().splitlines())


def test_resume_with_a_different_model_is_refused(data: Path, tmp_path: Path) -> None:
    train(load_config("quick"), _opts(data, tmp_path, max_steps=2))
    with pytest.raises(ConfigError, match="does not fit this run"):
        train(load_config("quick", ["model.width=4"]), _opts(data, tmp_path, resume=True))


def test_resume_with_other_data_is_refused_and_moved_data_are_taken(data: Path, tmp_path: Path) -> None:
    """Every checkpoint records a digest of each image set; a resumed run's crops are positions in
    those images, so other images are refused, the same images in another folder taken."""
    run = tmp_path / "run"
    train(load_config("quick"), _opts(data, run, max_steps=2))
    assert load_checkpoint(run / "checkpoints" / "last.pt")["data"]["high"].startswith("3 images, ")
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for name in sorted(p.name for p in (data / "high").iterdir())[:2]:
        shutil.copy(data / "high" / name, fewer / name)
    with pytest.raises(ConfigError, match=r"trained on other high data \(3 images, [0-9a-f]+\) than this run's \(2 images"):
        train(load_config("quick"), RunOptions(out=run, low=data / "low", high=fewer, progress=False, resume=True))
    moved = tmp_path / "moved"
    shutil.copytree(data / "high", moved)
    result = train(load_config("quick"), RunOptions(out=run, low=data / "low", high=moved, progress=False,
                                                   resume=True, max_steps=1))
    assert result.status == "stopped"


def test_unreadable_training_images_are_skipped_and_small_ones_named(data: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    low = tmp_path / "low"
    shutil.copytree(data / "low", low)
    (low / "broken.png").write_bytes(b"\x89PNG not an image")
    (low / "day2").mkdir()
    with caplog.at_level(logging.INFO, logger="training"):
        result = train(load_config("quick"), RunOptions(out=tmp_path / "run", low=low, high=data / "high",
                                                       progress=False, max_steps=1))
    assert result.status == "stopped"
    assert f"{low}: 3 image(s) read, 1 unreadable file(s) skipped; its sub-folders are not read (day2)" in caplog.text
    small = low / "small.png"
    cv2.imwrite(str(small), np.zeros((20, 64), np.uint8))
    with pytest.raises(DataError, match=rf"1 image\(s\) smaller than the 32x32 g_pretrain G-input crop \({small} is 20x64\)"):
        train(load_config("quick"), RunOptions(out=tmp_path / "run2", low=low, high=data / "high", progress=False))


def test_atomic_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = atomic_save({"format": CKPT_FORMAT, "x": torch.arange(3)}, tmp_path / "a" / "c.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))


def test_ctrl_c_saves_and_exits_130(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.train", "--config", "quick", "--no-progress", "--low", str(data / "low"),
           "--high", str(data / "high"), "--out", str(out), "--set", "phases.gan.iterations=100000"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoints" / "after_d_pretrain.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["phase_name"] == "gan" and ckpt["step"] >= 1


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(data: Path, tmp_path: Path) -> None:
    """DistributedDataParallel with the gloo backend: 2 ranks, only rank 0 writes; G's loss with the
    temporal term runs G twice per step (its crops, then the twins')."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", "-m", "training.train",
           "--config", "quick", "--no-progress", "--low", str(data / "low"), "--high", str(data / "high"),
           "--out", str(tmp_path), "--twins", str(data / "twins"),
           "--set", "phases.gan.weights={adv: 1.0, l1: 0.5, ms_ssim: 0.5, temporal: 1.0}"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("finished after") == 1, done.stdout  # rank 0 reports, rank 1 does not
    assert (tmp_path / "generator.pt").is_file()
    assert len(list((tmp_path / "tb").iterdir())) == 1
    assert np.isfinite(float(load_checkpoint(tmp_path / "generator.pt")["generator"]["stem.0.weight"].abs().sum()))


def test_select_cli_on_run_checkpoints(data: Path, full_run: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks.select measures every file on every set, writes the table and its pick; a
    missing file is one line and exit status 2."""
    from benchmarks.select import main as select_main

    other = tmp_path / "other" / "eval"
    shutil.copytree(data / "eval", other)
    files = [full_run / "checkpoints" / "after_g_pretrain.pt", full_run / "generator.pt"]
    # The quick run's 8-channel generators draw frame edges; a 255-level limit lets the rule choose.
    assert select_main(["--weights", *map(str, files), "--incumbent", str(files[1]), "--eval", str(data / "eval"),
                        str(other), "--edge-limit", "255", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("| " + str(full_run)) == 2 and f"| weights | edges | {data.name} | other | met |" in out
    report = json.loads((tmp_path / "s.json").read_text())
    totals = [sum(sum(m.values()) for m in c["met"].values()) for c in report["candidates"]]
    assert report["pick"] == str(files[0] if totals[0] > totals[1] else files[1]) and f"pick: {report['pick']}" in out
    assert set(report["results"][str(files[0])]) == {data.name, "other"}
    assert all(len(c["met"]) == 2 for c in report["candidates"])
    assert select_main(["--weights", str(tmp_path / "none.pt"), "--eval", str(data / "eval")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "none.pt" in err[-1]

def test_evaluate_and_curves(data: Path, full_run: Path, tmp_path: Path) -> None:
    from benchmarks.evaluate import DIAGNOSTICS, LABEL_STRIP, METRICS, check_targets, evaluate, markdown_table
    from benchmarks.evaluate import main as evaluate_main
    from training.runlog import plot_curves

    res = evaluate(full_run / "generator.pt", data / "eval", progress=False)
    assert res["n"]["pairs"] == 3 and set(res["g"]) == set(METRICS + DIAGNOSTICS)
    assert res["y"]["kl_y"] == pytest.approx(0.0, abs=1e-12) and res["x"]["kl_y"] > 0
    assert len(check_targets(res)) == 4
    assert markdown_table(res).count("\n| ") == 3
    assert set(res["median"]) == {"x", "y", "g"} and set(res["median"]["g"]) == set(METRICS + DIAGNOSTICS)
    assert res["median"]["y"]["kl_y"] == pytest.approx(0.0, abs=1e-12)
    assert min(res["median"]["x"]["grain_lat"], res["x"]["grain_lat"]) > 0
    assert "Per-pair medians of the lateral grain (px): x " in markdown_table(res)
    assert res["y"]["kl_y_shift"] == pytest.approx(0.0, abs=1e-12) and res["y"]["kl_split"] > 0
    assert res["x"]["kl_y_shift"] <= res["x"]["kl_y"] and "KL diagnostics: y's split-half KL" in markdown_table(res)
    # The same generator's ONNX export, run by the engine's ONNX Runtime backend, measures the same.
    from engine.onnx_export import export_checkpoint

    exported = evaluate(export_checkpoint(full_run / "generator.pt", tmp_path / "g.onnx"), data / "eval", progress=False)
    assert exported["x"] == res["x"] and exported["y"] == res["y"]
    for k in METRICS:
        assert exported["g"][k] == pytest.approx(res["g"][k], rel=0.05, abs=0.02), k
    png = plot_curves(full_run / "log.csv", tmp_path / "curves.png")
    assert cv2.imread(str(png)).shape[1] > 3 * 300  # one panel per phase
    marked = cv2.imread(str(plot_curves(full_run / "log.csv", tmp_path / "marked.png", mark=2)))
    assert marked.shape == cv2.imread(str(png)).shape and (marked != cv2.imread(str(png))).any()
    # unit 11, the gan phase's first, is not logged (log_every 2) but was run: it is drawn too
    first_gan = cv2.imread(str(plot_curves(full_run / "log.csv", tmp_path / "gan1.png", mark=11)))
    assert (first_gan != cv2.imread(str(png))).any() and (first_gan != marked).any()
    for unit in (0, 99999):
        with pytest.raises(ValueError, match=f"unit {unit} is not one the run .* reached"):
            plot_curves(full_run / "log.csv", tmp_path / "bad.png", mark=unit)
    assert evaluate_main(["--weights", str(full_run / "generator.pt"), "--eval", str(data / "eval"),
                          "--json", str(tmp_path / "r.json"), "--figure", str(tmp_path / "ex.png"),
                          "--pairs-figure", str(tmp_path / "pairs.png")]) == 0
    assert (tmp_path / "r.json").is_file() and cv2.imread(str(tmp_path / "pairs.png")).shape[1] >= 2 * 500
    # The per-pair figures in the JSON give the same harm counts as the result's worse_than_x.
    from benchmarks.pairplot import load_results, pair_values

    (saved,) = load_results(tmp_path / "r.json").values()
    for k in ("cnr", "log_corr"):
        xs, gs = pair_values(saved, k)
        assert (int((gs < xs).sum()), xs.size) == (saved["worse_than_x"][k], saved["worse_than_x"][f"pairs_{k}"])
    assert len(saved["pairs"]["g"]["log_corr"]) == res["n"]["pairs"]
    assert cv2.imread(str(tmp_path / "ex.png"), cv2.IMREAD_GRAYSCALE).shape == (LABEL_STRIP + 2 * 48, 3 * 64)
    assert evaluate_main(["--weights", str(tmp_path / "none.pt"), "--eval", str(data / "eval")]) == 2
