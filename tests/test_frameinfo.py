"""python -m engine.frameinfo: what the engine does to a file's frames before the model (real
pictures, a real DICOM file with its pixel spacing, a broken file; no model is loaded)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from dicom_testutil import us_dataset

from engine.frameinfo import describe, frame_info, main
from engine.levels import PRESET_LEVELS, TRAINED_LEVEL, tile_stats
from training.sim import simulate_pair


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return simulate_pair(2, (128, 160))[0]


def test_frame_info_names_what_each_mode_does(frame: np.ndarray) -> None:
    info = frame_info(frame)
    assert (info.tiles.level, info.tiles.spread) == tile_stats(frame)
    assert info.targets == {"preset": PRESET_LEVELS, "range": None}  # a simulated frame: inside the range
    dark = np.clip(frame.astype(np.int64) - 60, 0, 255).astype(np.uint8)
    dark_info = frame_info(dark, (0.1, 0.3))
    assert dark_info.targets["range"][0] == TRAINED_LEVEL[0] and dark_info.working_mm == 0.3
    line = describe(dark_info)
    assert f"level {dark_info.tiles.level:.0f}" in line and "range: to level 85" in line
    assert "pixels 0.1 x 0.3 mm (run on 0.3 mm pixels)" in line
    blank = frame_info(np.zeros((64, 64), np.uint8))
    assert blank.tiles is None and blank.targets == {"preset": None, "range": None}
    assert "no tissue tile" in describe(blank)


def test_a_large_anechoic_region_shows_as_tiles_left_out(frame: np.ndarray) -> None:
    cyst = frame.copy()
    cyst[:, :96] = np.clip(frame[:, :96].astype(np.int64) - 100, 0, 255).astype(np.uint8)
    tiles = frame_info(cyst).tiles
    left_out = tiles.corners[~tiles.tissue]
    assert len(left_out) >= 10 and (left_out[:, 1] < 96).all()  # every tile left out lies in the dark region
    assert tiles.tissue[tiles.corners[:, 1] >= 96].all()


def test_the_command_reports_every_file_and_names_the_one_it_cannot_read(
        frame: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), frame)
    (folder / "broken.png").write_bytes(b"not a picture")
    ds = us_dataset()
    ds.set_pixel_data(np.stack([frame, frame]), "MONOCHROME2", 8)
    ds.PixelSpacing = [0.6, 0.6]
    ds.save_as(folder / "cine.dcm", enforce_file_format=True)
    figures = tmp_path / "figures"
    assert main([str(folder), "--figures", str(figures)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{folder / 'a.png'}: 128x160, level ")
    assert "pixels 0.6 x 0.6 mm (run on 0.5 mm pixels)" in lines[1] and "pixels: not given" in lines[0]
    assert err.splitlines() == [err.strip()] and str(folder / "broken.png") in err
    for name in ("a.png", "cine.png"):
        picture = cv2.imread(str(figures / name))
        assert picture is not None and picture.shape[0] > 200 and picture.shape[1] > 600


def test_missing_files_empty_folders_and_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.png"
    assert main([str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"engine.frameinfo: {empty}: no images, DICOM files or videos",
                   "engine.frameinfo: error: no file to read among the inputs"], err
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--figures", str(tmp_path / "file.txt")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--figures" in err and "not a folder" in err
