"""Output calibration (training.calibration, python -m training.calibrate) on a small real DRNN."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="calibration runs the generator in torch (the [train] extra)")

from engine_testutil import make_checkpoint, random_frames  # noqa: E402

from training.calibrate import main  # noqa: E402
from training.calibration import (  # noqa: E402
    Calibration,
    OutputCalibrationError,
    apply_calibration,
    calibrated_output,
    fit_calibration,
    grey_pdf,
    head_logits,
)
from training.checkpoint import export_generator, load_checkpoint, load_generator  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("cal") / "drnn.pt")


def _cal(gain: float, offset: float) -> Calibration:
    return Calibration(gain, offset, kl_before=0.0, kl_after=0.0, low_images=1, high_images=1)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * np.log(p / q)))


def test_folding_into_the_head_is_the_affine_map_of_the_logits(ckpt: Path) -> None:
    g = load_generator(ckpt)
    x = torch.rand(2, 1, 40, 56)
    with torch.no_grad():
        z = g.logits(x)
        folded = apply_calibration(g, _cal(1.7, -0.3))(x)
    torch.testing.assert_close(folded, torch.sigmoid(1.7 * z - 0.3), atol=1e-5, rtol=1e-5)


def test_fit_recovers_a_known_gain_and_offset_from_unpaired_images(ckpt: Path) -> None:
    g = load_generator(ckpt)
    z_low = head_logits(g, random_frames(10, seed=1))
    # "High-quality" images: other frames through the same generator, calibrated by (1.6, 0.35).
    high = [calibrated_output(z, 1.6, 0.35) for z in head_logits(g, random_frames(10, seed=2))]
    cal = fit_calibration(z_low, high)
    assert cal.gain == pytest.approx(1.6, abs=0.08)
    assert cal.offset == pytest.approx(0.35, abs=0.08)
    assert cal.kl_after < cal.kl_before / 5
    # kl_after is the objective at the fitted point, recomputed here from its definition.
    p_high = grey_pdf(np.concatenate([h.ravel() for h in high]))
    q = grey_pdf(np.concatenate([calibrated_output(z, cal.gain, cal.offset).ravel() for z in z_low]))
    assert cal.kl_after == pytest.approx(_kl(p_high, q), rel=1e-9)


def test_masks_restrict_the_pixels_that_count(ckpt: Path) -> None:
    g = load_generator(ckpt)
    z = head_logits(g, random_frames(6, seed=3))
    left = [np.zeros(zi.shape, bool) for zi in z]
    for m in left:
        m[:, : m.shape[1] // 2] = True
    # The high images agree with (1.5, 0) on the left halves only; the right halves are brighter.
    high = []
    for zi, m in zip(z, left, strict=True):
        h = calibrated_output(zi, 1.5, 0.0)
        h[~m] = calibrated_output(zi, 1.5, 1.0)[~m]
        high.append(h)
    masked = fit_calibration(z, high, low_masks=left, high_masks=left)
    assert masked.gain == pytest.approx(1.5, abs=0.08) and abs(masked.offset) < 0.08
    whole = fit_calibration(z, high)
    assert whole.offset > masked.offset + 0.2  # the bright halves pull the unmasked fit up
    with pytest.raises(OutputCalibrationError, match="masks do not fit"):
        fit_calibration(z, high, low_masks=left[:-1], high_masks=left)
    with pytest.raises(OutputCalibrationError, match="select no pixel"):
        none = [np.zeros_like(m) for m in left]
        fit_calibration(z, high, low_masks=none, high_masks=none)


def test_unreachable_targets_are_refused(ckpt: Path) -> None:
    g = load_generator(ckpt)
    z = head_logits(g, random_frames(4, seed=4))
    with pytest.raises(OutputCalibrationError, match="needs low-probe and high-probe images"):
        fit_calibration(z, [])
    # Pure black-and-white "images" would need a gain far beyond the generator's range.
    rng = np.random.default_rng(0)
    binary = [np.where(rng.random(zi.shape) < 0.5, 0, 255).astype(np.uint8) for zi in z]
    with pytest.raises(OutputCalibrationError, match="outside"):
        fit_calibration(z, binary)


def _write(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    return folder


def test_cli_writes_a_calibrated_generator_that_keeps_its_record(ckpt: Path, tmp_path: Path) -> None:
    g = load_generator(ckpt)
    low = _write(tmp_path / "low", random_frames(8, seed=5))
    (low / "broken.png").write_bytes(b"not a picture")  # counted and skipped, not fatal
    high = _write(tmp_path / "high", [calibrated_output(z, 1.4, 0.2) for z in head_logits(g, random_frames(8, seed=6))])
    out = tmp_path / "cal.pt"
    assert main(["--weights", str(ckpt), "--low", str(low), "--high", str(high), "--out", str(out)]) == 0
    record = load_checkpoint(out)["calibration"]
    assert record["gain"] == pytest.approx(1.4, abs=0.1) and record["previous"] is None
    assert record["masked"] is False and record["low_images"] == 8 and record["high_images"] == 8
    assert load_checkpoint(export_generator(out, tmp_path / "exported.pt"))["calibration"] == record
    x = torch.rand(1, 1, 33, 47)
    with torch.no_grad():
        want = torch.sigmoid(record["gain"] * g.logits(x) + record["offset"])
        torch.testing.assert_close(load_generator(out)(x), want, atol=1e-5, rtol=1e-5)
    # Calibrating the calibrated file again keeps the first record and composes the maps.
    again = tmp_path / "again.pt"
    assert main(["--weights", str(out), "--low", str(low), "--high", str(high), "--out", str(again)]) == 0
    second = load_checkpoint(again)["calibration"]
    assert second["previous"]["gain"] == record["gain"]
    assert abs(second["gain"] - 1.0) < 0.05 and abs(second["offset"]) < 0.05  # already calibrated


def test_cli_on_a_simulated_paired_folder_uses_the_parenchyma(ckpt: Path, tmp_path: Path) -> None:
    from training.sim import write_dataset

    write_dataset(tmp_path / "sim", count=0, size=64, seed=11, paired=True, eval_count=3)
    out = tmp_path / "cal.pt"
    assert main(["--weights", str(ckpt), "--pairs", str(tmp_path / "sim" / "eval"), "--out", str(out)]) == 0
    record = load_checkpoint(out)["calibration"]
    assert record["masked"] is True and record["low_images"] == 3
    assert record["kl_after"] <= record["kl_before"]


def test_cli_errors_are_one_line_and_write_nothing(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cal.pt"
    assert main(["--weights", str(ckpt), "--low", str(tmp_path / "nope"), "--high", str(tmp_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "nope" in err and "\n" not in err and not out.exists()
    high = _write(tmp_path / "high", random_frames(2, seed=7))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["--weights", str(bad), "--low", str(high), "--high", str(high), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "bad.pt" in err and "\n" not in err and not out.exists()
    for argv in (["--low", str(high)], ["--pairs", str(high), "--low", str(high), "--high", str(high)]):
        with pytest.raises(SystemExit) as exc:
            main(["--weights", str(ckpt), "--out", str(out), *argv])
        assert exc.value.code == 2
