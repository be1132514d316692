"""Training configs: the paper's schedule as data, validation errors that name the key, overrides."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from training.config import (
    CONFIG_DIR,
    ConfigError,
    LossWeights,
    PhaseConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)


def _raw(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())


def test_paper_yaml_holds_every_hyperparameter_of_the_paper() -> None:
    cfg = load_config("paper")
    assert cfg.version == 1
    assert (cfg.model.width, cfg.model.blocks, cfg.model.convs_per_block, cfg.model.stem_kernel) == (64, 6, 3, 7)
    assert cfg.discriminator.negative_slope == 0.2
    assert cfg.ms_ssim.sigmas == (0.5, 1.0, 2.0, 4.0, 8.0)
    assert cfg.ms_ssim.c1 == 0.01 and cfg.ms_ssim.c2 == 0.01
    g, d, gan = cfg.phases
    # 1. G reproduces its input: L1, random 192x192 crops, Adam 1e-4, batch 16, 100 epochs of 12,000.
    assert (g.kind, g.crop, g.batch, g.lr_g, g.crops, g.samples, g.epochs) == ("reconstruct", 192, 16, 1e-4, "random", 12000, 100)
    assert g.weights == LossWeights(l1=1.0)
    assert g.steps() == 100 * 750
    # 2. D: BCE, 128x128 crops, Adam 1e-6, batch 80, 5 epochs of 4,000 samples, real and fake in equal parts.
    assert (d.kind, d.d_crop, d.d_batch, d.lr_d, d.samples, d.epochs) == ("discriminate", 128, 80, 1e-6, 4000, 5)
    assert d.steps() == 5 * 50
    # 3. GAN: 500 iterations, D once and G 20 times, lambda 0.5, D 1e-6, G 1e-7, batches 8 and 40,
    #    window crops with 50% overlap, D minibatch 50% real / 25% fresh / 25% buffer.
    assert (gan.kind, gan.iterations, gan.d_steps, gan.g_steps) == ("gan", 500, 1, 20)
    assert (gan.lr_d, gan.lr_g, gan.batch, gan.d_batch, gan.crop, gan.d_crop) == (1e-6, 1e-7, 8, 40, 192, 128)
    assert (gan.crops, gan.overlap, gan.real_fraction, gan.pool_fraction) == ("window", 0.5, 0.5, 0.25)
    assert gan.weights == LossWeights(adv=1.0, l1=0.5, ms_ssim=0.5)
    assert gan.pool_size >= gan.d_batch * gan.pool_fraction


def test_paper_cpu_shortens_the_paper_without_changing_its_method() -> None:
    """paper_cpu.yaml may change lengths, crops and learning rates, nothing else of paper.yaml."""
    paper, cpu = load_config("paper"), load_config("paper_cpu")
    assert (cpu.model, cpu.discriminator, cpu.ms_ssim) == (paper.model, paper.discriminator, paper.ms_ssim)
    assert [(p.name, p.kind) for p in cpu.phases] == [(p.name, p.kind) for p in paper.phases]
    shortened = {"crop", "d_crop", "batch", "d_batch", "lr_g", "lr_d", "samples", "epochs", "iterations", "g_steps",
                 "pool_size"}
    for slow, fast in zip(paper.phases, cpu.phases, strict=True):
        same = {k: v for k, v in vars(slow).items() if k not in shortened}
        assert same == {k: v for k, v in vars(fast).items() if k not in shortened}, slow.name
    g_pre, d_pre, gan = cpu.phases
    assert gan.batch * 2 == g_pre.batch and gan.d_batch * 2 == d_pre.d_batch  # half the batch sizes, as the paper
    assert gan.weights == LossWeights(adv=1.0, l1=0.5, ms_ssim=0.5) and gan.d_steps == 1


def test_finetune_is_the_paper_without_its_reconstruction_phase_plus_the_anchor() -> None:
    """finetune.yaml: the paper's D pretraining and GAN phase as they are, G never trained to
    reproduce its input, and in the GAN phase the anchor with batch norm as deployed."""
    paper, ft = load_config("paper"), load_config("finetune")
    assert (ft.model, ft.discriminator, ft.ms_ssim) == (paper.model, paper.discriminator, paper.ms_ssim)
    assert [p.kind for p in ft.phases] == ["discriminate", "gan"]
    assert ft.phases[0] == paper.phases[1]
    gan = ft.phases[1]
    assert gan.freeze_bn and gan.weights.anchor > 0
    assert gan.weights == LossWeights(adv=1.0, l1=0.5, ms_ssim=0.5, anchor=gan.weights.anchor)
    unchanged = {k: v for k, v in vars(paper.phases[2]).items() if k not in ("freeze_bn", "weights")}
    assert {k: v for k, v in vars(gan).items() if k not in ("freeze_bn", "weights")} == unchanged


def test_needle_ft_is_the_distillation_loss_at_full_width_with_the_anchor() -> None:
    """needle_ft.yaml fine-tunes the default model towards targets of its own: fast.yaml's loss
    terms, at the paper's width, plus the anchor with batch norm as deployed (a crop's zero-padded
    border must not pull the model away from what the engine computes with mirrored context)."""
    paper, fast, ft = load_config("paper"), load_config("fast"), load_config("needle_ft")
    assert ft.model == paper.model
    (phase,) = ft.phases
    assert phase.kind == "supervised" and phase.freeze_bn and phase.weights.anchor > 0
    assert replace(phase.weights, anchor=0.0) == fast.phases[-1].weights
    assert phase.lr_g < fast.phases[-1].lr_g


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_shipped_configs_load_and_round_trip(name: str) -> None:
    cfg = load_config(name)
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg))))
    assert again == cfg


def test_quick_config_is_small_but_runs_all_three_paper_phases() -> None:
    cfg = load_config("quick")
    assert [p.kind for p in cfg.phases] == ["reconstruct", "discriminate", "gan"]
    assert sum(p.steps() for p in cfg.phases) < 30
    assert max(p.crop for p in cfg.phases) <= 32


def test_unknown_key_is_named() -> None:
    raw = _raw("quick")
    raw["phases"][2]["lr_gen"] = 1e-3
    with pytest.raises(ConfigError, match=r"phases\[2\]\.lr_gen: unknown key"):
        config_from_dict(raw)
    raw = _raw("quick")
    raw["modle"] = {}
    with pytest.raises(ConfigError, match=r"^modle: unknown key"):
        config_from_dict(raw)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("model", "width"), "wide", r"model\.width: expected int, got str"),
        (("phases", 0, "lr_g"), "fast", r"phases\[0\]\.lr_g: expected float, got str"),
        (("phases", 1, "epochs"), True, r"phases\[1\]\.epochs: expected int, got bool"),
        (("ms_ssim", "sigmas"), 2.0, r"ms_ssim\.sigmas: expected a list"),
        (("phases", 0, "kind"), "dream", r"phases\[0\]\.kind: 'dream' is not one of"),
        (("phases", 2, "spectrum_window"), "kaiser", r"phases\[2\]\.spectrum_window: 'kaiser' is not one of none, hann"),
        (("phases", 2, "pool_size"), 0, r"phases\[2\]\.pool_size"),
        (("phases", 2, "d_crop"), 64, r"phases\[2\]\.d_crop: D crop 64 is larger than G crop 32"),
        (("phases", 0, "weights"), {"l1": 0.0}, r"phases\[0\]\.weights: a reconstruct phase needs"),
        (("phases", 1, "weights"), {"temporal": 1.0}, r"phases\[1\]\.weights: temporal is a loss of G"),
        (("version",), 2, r"version: expected 1, got 2"),
        (("phases", 1, "d_batch"), 1, r"phases\[1\]\.d_batch: a discriminate phase needs d_batch >= 2"),
        (("phases", 2, "d_batch"), 1, r"phases\[2\]\.d_batch: 1 leaves no real or no fresh fake"),
    ],
)
def test_wrong_values_are_named(path: tuple, value: object, message: str) -> None:
    raw = _raw("quick")
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_missing_required_key_and_empty_phases() -> None:
    raw = _raw("quick")
    del raw["phases"][0]["kind"]
    with pytest.raises(ConfigError, match=r"phases\[0\]\.kind: required key is missing"):
        config_from_dict(raw)
    with pytest.raises(ConfigError, match="phases: at least one phase"):
        config_from_dict({"version": 1, "phases": []})


def test_overrides_by_phase_name_and_index() -> None:
    cfg = load_config("quick", ["phases.gan.iterations=7", "phases.0.batch=4", "model.width=4", "seed=9",
                                "phases.gan.lr_g=1e-7"])
    assert cfg.phases[2].iterations == 7 and cfg.phases[0].batch == 4 and cfg.phases[2].lr_g == 1e-7
    assert cfg.model.width == 4 and cfg.seed == 9
    with pytest.raises(ConfigError, match="no phase named or numbered 'nope'") as bad:
        load_config("quick", ["phases.nope.batch=4"])
    assert str(bad.value).count("--set") == 1, bad.value  # the item named once
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["phases"])
    with pytest.raises(ConfigError, match=r"phases\[0\]\.batch: expected int, got str"):
        load_config("quick", ["phases.g_pretrain.batch=four"])


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file.*named configs: .*paper"):
        load_config("nonexistent")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nphases: [\n")
    with pytest.raises(ConfigError, match=f"config {bad}: not valid YAML"):
        load_config(bad)
    bad.write_text("version: 1\nphases:\n  - {name: a, kind: reconstruct, samples: 4, epochs: 1, weights: {l2: 1}}\n")
    with pytest.raises(ConfigError, match=rf"config {bad}: phases\[0\]\.weights\.l2: unknown key"):
        load_config(bad)


def test_phase_steps_counts_partial_batches() -> None:
    p = PhaseConfig(name="a", kind="reconstruct", samples=10, batch=4, epochs=3, weights=LossWeights(l1=1))
    assert p.steps() == 3 * 3
    assert TrainConfig(phases=(p,)).phases[0].uses_d() is False
