"""The training loop: the phases of a :class:`~training.config.TrainConfig`, one step function
per phase kind, with exact resume, atomic checkpoints and logs.

A *unit* is one optimizer step (``reconstruct``, ``supervised``, ``discriminate``) or one GAN
iteration (``d_steps`` D steps then ``g_steps`` G steps).  Every random choice of a unit is
drawn from ``numpy.random.default_rng([seed, phase, stream, unit, rank])``, so a unit is a
function of its counters: resuming at ``(phase, step)`` with the saved models, optimizers and
history buffer replays the uninterrupted run exactly (deterministic CPU kernels).

Devices: ``cpu`` or ``cuda`` (bfloat16 autocast when ``amp``); under ``torchrun``
(``WORLD_SIZE`` > 1) models are wrapped in DistributedDataParallel, each rank draws its own
crops (``rank`` is part of every seed) with ``batch / world_size`` per rank, G's batch norm
is synchronised across GPUs, and only rank 0 writes files.

Stopping: SIGINT (Ctrl-C) or ``max_steps`` finish the current unit, write
``checkpoints/last.pt`` and return; the entry point exits with 130 after Ctrl-C, 0 otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from training.checkpoint import (
    CKPT_FORMAT,
    atomic_save,
    code_version,
    export_generator,
    input_levels,
    load_checkpoint,
)
from training.config import ConfigError, PhaseConfig, TrainConfig, config_from_dict, config_to_dict
from training.losses import bce_fake_loss, bce_real_loss, histogram_loss, l1_loss, ms_ssim_loss, spectrum_loss
from training.models import DRNN, Discriminator
from training.pool import ImagePool
from training.runsetup import RunOptions, check_run_folder, load_data

__all__ = ["RunResult", "Trainer", "train"]

logger = logging.getLogger(__name__)

_STREAM_POSITIONS, _STREAM_EPOCH, _STREAM_UNIT = 1, 2, 3
_BATCH_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class RunResult:
    """``status``: ``finished``, ``stopped`` (``max_steps``) or ``interrupted`` (SIGINT)."""

    status: str
    units: int
    checkpoint: Path
    generator: Path | None


class _Logits(nn.Module):
    """``D.logits`` as a module's ``forward``, so DistributedDataParallel can wrap it."""

    def __init__(self, d: Discriminator) -> None:
        super().__init__()
        self.d = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d.logits(x)


class Trainer:
    """Runs the phases of ``cfg`` on the data of ``opts``; see the module docstring."""

    def __init__(self, cfg: TrainConfig, opts: RunOptions) -> None:
        check_run_folder(opts)  # before any work, and before any rank joins the process group
        self.cfg, self.opts = cfg, opts
        self.code_version = code_version()  # of the code this process runs, not of later commits
        self.out = Path(opts.out)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if opts.device not in ("cpu", "cuda"):
            raise ConfigError(f"--device: {opts.device!r} is not cpu or cuda")
        if opts.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available")
        self.device = torch.device(f"cuda:{local_rank}" if opts.device == "cuda" else "cpu")
        for p in cfg.phases:
            for name in ("batch", "d_batch"):
                if getattr(p, name) % self.world:
                    raise ConfigError(f"phases.{p.name}.{name}: {getattr(p, name)} is not divisible by WORLD_SIZE={self.world}")
        if self.world > 1 and not torch.distributed.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if cfg.threads and self.device.type == "cpu":
            torch.set_num_threads(cfg.threads)
        self.data = load_data(cfg, opts)
        self.fingerprints = self.data.fingerprints()  # recorded in every checkpoint, compared on --resume
        torch.manual_seed(cfg.seed)
        self.g = DRNN(**dataclasses.asdict(cfg.model)).to(self.device)
        if opts.init is not None:
            init = load_checkpoint(opts.init)
            if init["generator_config"] != self.g.config:
                raise ConfigError(f"--init {opts.init}: generator {init['generator_config']} is not the config's model {self.g.config}")
            self.g.load_state_dict(init["generator"])
            if input_levels(init, opts.init) != self.data.input_levels:
                logger.warning("--init %s was trained on inputs at grey levels %r, this run's are at %r, which its "
                            "checkpoints record", opts.init, input_levels(init, opts.init), self.data.input_levels)
        self.d = Discriminator(cfg.discriminator.layers, cfg.discriminator.negative_slope).to(self.device)
        self.g_train: nn.Module = self.g
        self.d_train: nn.Module = _Logits(self.d)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            if self.device.type == "cuda":  # batch statistics over the global batch, as on one GPU
                self.g = nn.SyncBatchNorm.convert_sync_batchnorm(self.g)
            self.g_train = DDP(self.g, device_ids=ids)
            self.d_train = DDP(self.d_train, device_ids=ids)
        self.phase_idx, self.step, self.unit, self.wall = 0, 0, 0, 0.0
        self.opt_g: torch.optim.Optimizer | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        self.pool: ImagePool | None = None
        self.anchor: nn.Module | None = None
        self.positions: dict[str, np.ndarray] = {}
        self._stop_signal = False

    # ------------------------------------------------------------------ helpers

    def _rng(self, stream: int, index: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, self.phase_idx, stream, index, self.rank])

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def _frozen_copy(self) -> nn.Module:
        """G as it is now, for the ``anchor`` term: no gradients, and batch norm with momentum 0,
        so that in training mode it normalises with each minibatch's statistics as G does but
        never changes its running ones."""
        g0 = copy.deepcopy(self.g).requires_grad_(False)
        for m in g0.modules():
            if isinstance(m, _BATCH_NORMS):
                m.momentum = 0.0
        return g0

    def _subcrop(self, t: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
        """A random ``size x size`` window of each image of ``t``."""
        h, w = t.shape[-2:]
        if (h, w) == (size, size):
            return t
        tops = rng.integers(h - size + 1, size=len(t))
        lefts = rng.integers(w - size + 1, size=len(t))
        return torch.stack([t[i, :, a : a + size, b : b + size] for i, (a, b) in enumerate(zip(tops, lefts, strict=True))])

    def _epoch_batch(self, key: str, batch: int) -> np.ndarray:
        """The positions of unit ``self.step`` in the epoch-shuffled list ``self.positions[key]``."""
        pos = self.positions[key]
        per_epoch = math.ceil(len(pos) / batch)
        epoch, j = divmod(self.step, per_epoch)
        seed = [self.cfg.seed, self.phase_idx, _STREAM_EPOCH, epoch, self.rank, "xy".index(key)]
        order = np.random.default_rng(seed).permutation(len(pos))
        return pos[order[j * batch : (j + 1) * batch]]

    @torch.no_grad()
    def _fakes(self, x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
        """``G(x)`` in inference mode, cut to the D crop size, in float32."""
        self.g.eval()
        with self._autocast():
            out = self.g(x)
        return self._subcrop(out.float(), size, rng)

    # ------------------------------------------------------------------ updates

    def _g_update(
        self,
        x: torch.Tensor,
        target: torch.Tensor,
        p: PhaseConfig,
        rng: np.random.Generator,
        d_crop: int = 0,
        real: torch.Tensor | None = None,
    ) -> tuple[dict[str, float], torch.Tensor]:
        """One G step on ``sum_k w_k * term_k``, ``w = p.weights``.

        Structural terms (``l1``, ``ms_ssim``) compare ``G(x)`` with ``target``, ``anchor`` with
        the phase's starting generator's output ``G0(x)`` (``self.anchor``).  ``adv`` scores
        a random ``d_crop`` window of ``G(x)`` with the frozen D.  ``p.freeze_bn``: G's batch
        normalisation runs on its running statistics and leaves them unchanged.  Statistics terms (``hist``,
        ``spectrum``) compare ``G(x)`` with ``target`` or, when ``real`` crops are given, that
        window with them (unpaired); ``p.spectrum_window`` tapers the spectrum term's crops.
        ``temporal`` compares the change of G's output between the two frames of ``len(x)`` random
        twin crops with the high probe's, ``E|(G(x_b) - G(x_a)) - (y_b - y_a)|``.
        """
        w = p.weights
        self.g_train.train()
        if p.freeze_bn:
            for m in self.g_train.modules():
                if isinstance(m, _BATCH_NORMS):
                    m.eval()
        with self._autocast():
            out = self.g_train(x)
        out = out.float()
        window = self._subcrop(out, d_crop, rng) if d_crop else out
        terms: dict[str, torch.Tensor] = {}
        if w.adv:
            self.d.requires_grad_(False)
            with self._autocast():
                terms["adv"] = bce_real_loss(self.d.logits(window))
            self.d.requires_grad_(True)
        if w.anchor:  # G0 normalises as G does in this phase, so the term starts at 0
            self.anchor.train(not p.freeze_bn)
            with torch.no_grad(), self._autocast():
                start = self.anchor(x)
            terms["anchor"] = l1_loss(out, start.float())
        if w.l1:
            terms["l1"] = l1_loss(out, target)
        if w.ms_ssim:
            ms = self.cfg.ms_ssim
            terms["ms_ssim"] = ms_ssim_loss(out, target, ms.sigmas, ms.c1, ms.c2)
        stats_out, stats_ref = (window, real) if real is not None else (out, target)
        if w.hist:
            terms["hist"] = histogram_loss(stats_out, stats_ref)
        if w.spectrum:
            terms["spectrum"] = spectrum_loss(stats_out, stats_ref, window=p.spectrum_window)
        if w.temporal:
            rows = self.positions["twins"][rng.integers(len(self.positions["twins"]), size=len(x))]
            x_a, y_a, x_b, y_b = self.data.twins.crops(rows, p.crop, self.device)
            with self._autocast():
                both = self.g_train(torch.cat([x_a, x_b]))
            g_a, g_b = both.float().chunk(2)
            terms["temporal"] = l1_loss(g_b - g_a, y_b - y_a)
        loss = sum(getattr(w, k) * v for k, v in terms.items())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"g_loss": loss.item(), **{k: v.item() for k, v in terms.items()}}, out.detach()

    def _d_update(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """One D step on eq. (2): ``E[-log D(real)] + E[-log(1 - D(fake))]``."""
        self.d_train.train()
        with self._autocast():
            logits = self.d_train(torch.cat([real, fake])).float()
        loss_real, loss_fake = bce_real_loss(logits[: len(real)]), bce_fake_loss(logits[len(real) :])
        loss = loss_real + loss_fake
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        p = torch.sigmoid(logits.detach())
        return {"d_loss": loss.item(), "d_real": float(p[: len(real)].mean()), "d_fake": float(p[len(real) :].mean())}

    # ------------------------------------------------------------------ one unit per phase kind

    def _unit_reconstruct(self, p: PhaseConfig) -> tuple[dict[str, float], list[torch.Tensor]]:
        x = self.data.low.crops(self._epoch_batch("x", p.batch // self.world), p.crop, self.device)
        losses, out = self._g_update(x, x, p, self._rng(_STREAM_UNIT, self.step))
        return losses, [x, out]

    def _unit_supervised(self, p: PhaseConfig) -> tuple[dict[str, float], list[torch.Tensor]]:
        pos = self._epoch_batch("x", p.batch // self.world)
        x = self.data.pair_x.crops(pos, p.crop, self.device)
        y = self.data.pair_y.crops(pos, p.crop, self.device)
        losses, out = self._g_update(x, y, p, self._rng(_STREAM_UNIT, self.step))
        return losses, [x, out, y]

    def _unit_discriminate(self, p: PhaseConfig) -> tuple[dict[str, float], list[torch.Tensor]]:
        half = p.d_batch // self.world // 2
        real = self.data.high.crops(self._epoch_batch("y", half), p.d_crop, self.device)
        x = self.data.low.crops(self._epoch_batch("x", p.d_batch // self.world - half), p.crop, self.device)
        fake = self._fakes(x, p.d_crop, self._rng(_STREAM_UNIT, self.step))
        return self._d_update(real, fake), [fake, real]

    def _unit_gan(self, p: PhaseConfig) -> tuple[dict[str, float], list[torch.Tensor]]:
        rng = self._rng(_STREAM_UNIT, self.step)
        xpos, ypos = self.positions["x"], self.positions["y"]
        d_batch, g_batch = p.d_batch // self.world, p.batch // self.world
        n_real, n_hist = round(d_batch * p.real_fraction), round(d_batch * p.pool_fraction)
        for _ in range(p.d_steps):
            real = self.data.high.crops(ypos[rng.integers(len(ypos), size=n_real)], p.d_crop, self.device)
            hist = self.pool.sample(n_hist, rng) if self.pool is not None else None
            n_fresh = d_batch - n_real - (0 if hist is None else len(hist))
            x = self.data.low.crops(xpos[rng.integers(len(xpos), size=n_fresh)], p.crop, self.device)
            fresh = self._fakes(x, p.d_crop, rng)
            fake = fresh if hist is None else torch.cat([fresh, hist.to(self.device)])
            d_losses = self._d_update(real, fake)
        if self.pool is not None:
            self.pool.push(fresh[:n_hist], rng)
        totals: dict[str, float] = {}
        stats = p.weights.hist > 0 or p.weights.spectrum > 0
        for _ in range(p.g_steps):
            x = self.data.low.crops(xpos[rng.integers(len(xpos), size=g_batch)], p.crop, self.device)
            real_g = self.data.high.crops(ypos[rng.integers(len(ypos), size=g_batch)], p.d_crop, self.device) if stats else None
            g_losses, out = self._g_update(x, x, p, rng, d_crop=p.d_crop, real=real_g)
            for k, v in g_losses.items():
                totals[k] = totals.get(k, 0.0) + v / p.g_steps
        return {**d_losses, **totals}, [x, out, real]

    # ------------------------------------------------------------------ phases and state

    def _begin_phase(self) -> None:
        """Optimizers, buffer and crop positions of phase ``self.phase_idx`` (deterministic)."""
        p = self.cfg.phases[self.phase_idx]
        betas = (p.betas[0], p.betas[1])
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=p.lr_g, betas=betas) if p.kind != "discriminate" else None
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=p.lr_d, betas=betas) if p.uses_d() else None
        self.pool = ImagePool(p.pool_size) if p.kind == "gan" and p.pool_fraction > 0 else None
        self.anchor = self._frozen_copy() if p.weights.anchor > 0 else None
        rng = self._rng(_STREAM_POSITIONS)
        x_set = self.data.pair_x if p.kind == "supervised" else self.data.low
        if p.kind == "gan" or p.crops == "window":
            self.positions = {"x": x_set.window_positions(p.crop, p.overlap)}
            if p.uses_d():
                self.positions["y"] = self.data.high.window_positions(p.d_crop, p.overlap)
        elif p.kind == "discriminate":
            real = p.samples // 2
            self.positions = {
                "y": self.data.high.random_positions(real, p.d_crop, rng),
                "x": x_set.random_positions(p.samples - real, p.crop, rng),
            }
        else:
            self.positions = {"x": x_set.random_positions(p.samples, p.crop, rng)}
        if p.weights.temporal > 0:
            self.positions["twins"] = self.data.twins.x_a.window_positions(p.crop, p.overlap)

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` needs to continue exactly (see training.checkpoint)."""
        return {
            "format": CKPT_FORMAT,
            "generator": self.g.state_dict(),
            "generator_config": dict(self.g.config),
            "discriminator": self.d.state_dict(),
            "discriminator_config": {"layers": list(self.d.layers), "negative_slope": self.cfg.discriminator.negative_slope},
            "opt_g": self.opt_g.state_dict() if self.opt_g else None,
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "pool": self.pool.state_dict() if self.pool else None,
            "anchor": self.anchor.state_dict() if self.anchor is not None else None,
            "phase": self.phase_idx,
            "phase_name": self.cfg.phases[min(self.phase_idx, len(self.cfg.phases) - 1)].name,
            "step": self.step,
            "unit": self.unit,
            "wall_s": self.wall,
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "config": config_to_dict(self.cfg),
            "code_version": self.code_version,
            "input_levels": self.data.input_levels,
            "data": self.fingerprints,
        }

    def load_state_dict(self, ckpt: dict[str, Any], source: Path) -> None:
        """Restore a checkpoint written by :meth:`state_dict` (models, phase position, optimizers, buffer)."""
        levels = input_levels(ckpt, source)
        if levels != self.data.input_levels:
            raise ConfigError(f"--resume: checkpoint {source} was trained on inputs at grey levels {levels!r}, "
                              f"this run's data are at {self.data.input_levels!r} (training.data.LEVELS_FILE)")
        for name, was in ckpt.get("data", {}).items():  # checkpoints before 2026-11-28 have none
            now = self.fingerprints.get(name)
            if now != was:
                raise ConfigError(f"--resume: checkpoint {source} was trained on other {name} data ({was}) than "
                                  f"this run's ({now or 'none'}): give the run's own data folders")
        try:
            self.g.load_state_dict(ckpt["generator"])
            self.d.load_state_dict(ckpt["discriminator"])
            phase, step = ckpt["phase"], ckpt["step"]
            if phase == len(self.cfg.phases) > 0:
                # A finished run: continue at the end of its last phase, which --set may have lengthened.
                phase, step = phase - 1, config_from_dict(ckpt["config"]).phases[-1].steps()
            self.phase_idx, self.step, self.unit, self.wall = phase, step, ckpt["unit"], ckpt["wall_s"]
            if self.phase_idx < len(self.cfg.phases):
                self._begin_phase()
                for opt, key in ((self.opt_g, "opt_g"), (self.opt_d, "opt_d")):
                    if opt is not None and ckpt[key] is not None:
                        opt.load_state_dict(ckpt[key])
                if self.pool is not None and ckpt["pool"] is not None:
                    self.pool.load_state_dict(ckpt["pool"])
                if self.anchor is not None and ckpt.get("anchor") is not None:  # else: G as resumed
                    self.anchor.load_state_dict(ckpt["anchor"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            if ckpt["rng"]["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--resume: checkpoint {source} does not fit this run ({type(exc).__name__}: {exc})") from exc

    def save(self, name: str = "last.pt") -> Path:
        path = self.out / "checkpoints" / name
        if self.writer:
            atomic_save(self.state_dict(), path)
        return path

    # ------------------------------------------------------------------ the loop

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._stop_signal = True

    def _should_stop(self, ran: int) -> str | None:
        flag = torch.tensor([1.0 if self._stop_signal else 0.0], device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(flag)
        if float(flag) > 0:
            return "interrupted"
        if self.opts.max_steps and ran >= self.opts.max_steps:
            return "stopped"
        return None

    def run(self) -> RunResult:
        """Train to the end of the last phase, or until stopped; see the module docstring."""
        from training.runlog import RunLog

        last = self.out / "checkpoints" / "last.pt"
        if self.opts.resume:  # check_run_folder made sure last.pt is there
            self.load_state_dict(load_checkpoint(last, require=("discriminator", "phase", "step", "config")), last)
        elif self.phase_idx < len(self.cfg.phases):
            self._begin_phase()
        if self.writer:
            self.out.mkdir(parents=True, exist_ok=True)
            text = yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
            (self.out / "config.yaml").write_text(
                f"# code_version: {self.code_version}\n# input_levels: {self.data.input_levels}\n{text}")
        log = RunLog(self.out, enabled=self.writer)
        steps = [p.steps() for p in self.cfg.phases]
        done_before = sum(steps[: self.phase_idx]) + self.step
        bar = tqdm(total=sum(steps), initial=done_before, disable=not (self.opts.progress and self.writer), unit="unit")
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        t_ckpt = t_snap = time.monotonic()
        ran, status = 0, "finished"
        try:
            while self.phase_idx < len(self.cfg.phases):
                p = self.cfg.phases[self.phase_idx]
                unit_fn = getattr(self, f"_unit_{p.kind}")
                while self.step < steps[self.phase_idx]:
                    reason = self._should_stop(ran)
                    if reason:
                        status = reason
                        return self._finish(status, ran, log, bar)
                    t0 = time.monotonic()
                    losses, images = unit_fn(p)
                    self.step += 1
                    self.unit += 1
                    ran += 1
                    self.wall += time.monotonic() - t0
                    bar.update(1)
                    bar.set_postfix_str(f"{p.name} " + " ".join(f"{k}={v:.4g}" for k, v in losses.items()))
                    if self.step % self.cfg.log_every == 0 or self.step == steps[self.phase_idx]:
                        log.scalars(p.name, self.step, self.unit, self.wall, losses)
                    if self.step % self.cfg.sample_every == 0 or self.step == steps[self.phase_idx]:
                        log.sample(p.name, self.step, self.unit, images)
                    now = time.monotonic()
                    if now - t_ckpt >= self.cfg.checkpoint_every_s:
                        self.save()
                        t_ckpt = now
                    if self.cfg.snapshot_every_s and now - t_snap >= self.cfg.snapshot_every_s and self.writer:
                        export_generator(self.save(), self.out / "snapshots" / f"{p.name}_{self.step:06d}.pt")
                        t_snap = now
                self.phase_idx += 1
                self.step = 0
                if self.phase_idx < len(self.cfg.phases):
                    self._begin_phase()
                self.save()  # a crash in the next phase resumes from its start...
                t_ckpt = time.monotonic()
                self.save(f"after_{p.name}.pt")  # ...and each phase's end state is kept
            return self._finish(status, ran, log, bar)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _finish(self, status: str, ran: int, log: Any, bar: tqdm) -> RunResult:
        bar.close()
        log.close()
        ckpt = self.save()
        generator = None
        if status == "finished" and self.writer:
            generator = export_generator(ckpt, self.out / "generator.pt")
        return RunResult(status, ran, ckpt, generator)


def train(cfg: TrainConfig, opts: RunOptions) -> RunResult:
    """Build a :class:`Trainer` and run it."""
    return Trainer(cfg, opts).run()
