"""Readers and crops of training.data, on real files written to tmp_path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from dicom_testutil import us_dataset

from training.data import (
    CropSource,
    DataError,
    count_frames,
    iter_frames,
    random_crops,
    read_folder,
    read_frames,
    read_image,
    read_pairs,
    read_truth,
    window_crops,
    window_positions,
)


def _ramp(h: int = 48, w: int = 64) -> np.ndarray:
    return (np.add.outer(np.arange(h) * 3, np.arange(w) * 2) % 256).astype(np.uint8)


def _write_dicom(path: Path, pixels: np.ndarray, photometric: str, bits: int = 8,
                 palette: np.ndarray | None = None) -> Path:
    """A real DICOM file (file meta + data set) holding ``pixels`` (frames first when 3-D grey / 4-D colour);
    ``palette``: a 256-entry 16-bit lookup table used for red, green and blue (PALETTE COLOR)."""
    ds = us_dataset()
    colour = photometric == "RGB"
    multi = pixels.ndim == (4 if colour else 3)
    if multi:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[int(multi) : int(multi) + 2]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    if palette is not None:
        for k in (1, 2, 3):  # red, green, blue descriptors (0028,110k) and data (0028,120k)
            ds.add_new(0x00281100 + k, "US", [256, 0, 16])
            ds.add_new(0x00281200 + k, "OW", palette.astype("<u2").tobytes())
    ds.save_as(path, enforce_file_format=True)
    return path


def test_png_grey_and_colour_read_as_grey(tmp_path: Path) -> None:
    grey = _ramp()
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    assert np.array_equal(read_image(tmp_path / "g.png"), grey)
    bgr = np.dstack([grey, 255 - grey, np.full_like(grey, 40)])
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    out = read_image(tmp_path / "c.png")
    assert out.shape == grey.shape and out.dtype == np.uint8
    assert np.array_equal(out, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))


@pytest.mark.parametrize("suffix", [".jpg", ".tif", ".bmp"])
def test_other_picture_formats(tmp_path: Path, suffix: str) -> None:
    grey = _ramp()
    cv2.imwrite(str(tmp_path / f"a{suffix}"), grey)
    out = read_image(tmp_path / f"a{suffix}")
    assert out.shape == grey.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - grey).mean() < 3  # JPEG is lossy, the others exact


def test_16_bit_png_keeps_its_top_bits(tmp_path: Path) -> None:
    deep = (_ramp().astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    assert np.array_equal(read_image(tmp_path / "d.png"), _ramp())


def test_dicom_monochrome2_single_frame(tmp_path: Path) -> None:
    path = _write_dicom(tmp_path / "a.dcm", _ramp(), "MONOCHROME2")
    assert np.array_equal(read_image(path), _ramp())


def test_dicom_monochrome1_is_inverted_and_12_bits_scaled(tmp_path: Path) -> None:
    twelve = (_ramp().astype(np.int64) * 4095 // 255).astype(np.uint16)
    path = _write_dicom(tmp_path / "m1.dcm", twelve, "MONOCHROME1", bits=12)
    out = read_image(path)
    assert np.abs(out.astype(int) - (255 - _ramp().astype(int))).max() <= 1


def test_dicom_multiframe_cine_and_every(tmp_path: Path) -> None:
    frames = np.stack([_ramp() // (k + 1) for k in range(5)])
    path = _write_dicom(tmp_path / "cine", frames, "MONOCHROME2")  # no suffix: found by the DICM magic
    got = list(read_frames(path))
    assert len(got) == 5 and all(np.array_equal(a, b) for a, b in zip(got, frames, strict=True))
    assert [f.mean() for f in read_frames(path, every=2)] == [frames[k].mean() for k in (0, 2, 4)]
    assert np.array_equal(read_image(path, frame=3), frames[3])


def test_dicom_rgb_becomes_grey(tmp_path: Path) -> None:
    rgb = np.dstack([_ramp(), _ramp(), _ramp()])
    path = _write_dicom(tmp_path / "rgb.dcm", rgb, "RGB")
    assert np.abs(read_image(path).astype(int) - _ramp()).max() <= 1


def test_dicom_palette_colour_goes_through_its_lookup_table(tmp_path: Path) -> None:
    inverted = (255 - np.arange(256)) * 257  # a grey palette that inverts
    path = _write_dicom(tmp_path / "pal.dcm", _ramp(), "PALETTE COLOR", palette=inverted)
    assert np.abs(read_image(path).astype(int) - (255 - _ramp().astype(int))).max() <= 1


def test_dicom_without_pixels_and_garbage_name_the_file(tmp_path: Path) -> None:
    path = _write_dicom(tmp_path / "a.dcm", _ramp(), "MONOCHROME2")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(tmp_path / "empty.dcm")
    with pytest.raises(DataError, match="empty.dcm"):
        read_image(tmp_path / "empty.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(DataError, match="junk.dcm"):
        read_image(tmp_path / "junk.dcm")


def _write_avi(path: Path, frames: int = 7, size: tuple[int, int] = (48, 64)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size[1], size[0]))
    assert writer.isOpened()
    for k in range(frames):
        writer.write(cv2.cvtColor(np.full(size, 20 + 30 * k, np.uint8), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def test_video_every_frame_and_every_nth(tmp_path: Path) -> None:
    path = _write_avi(tmp_path / "clip.avi")
    frames = list(read_frames(path))
    assert len(frames) == 7 and frames[0].shape == (48, 64) and frames[0].dtype == np.uint8
    assert np.allclose([f.mean() for f in frames], [20 + 30 * k for k in range(7)], atol=3)
    assert len(list(read_frames(path, every=3))) == 3


def test_folder_mixes_file_kinds_in_name_order(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), _ramp())
    _write_dicom(tmp_path / "b.dcm", np.stack([_ramp()] * 2), "MONOCHROME2")
    _write_avi(tmp_path / "c.avi", frames=3)
    (tmp_path / "notes.txt").write_text("ignored")
    assert len(read_folder(tmp_path)) == 1 + 2 + 3
    assert len(list(iter_frames(tmp_path / "c.avi"))) == 3


def test_frame_counts_from_headers_match_what_is_read(tmp_path: Path) -> None:
    """:func:`count_frames` (a progress bar's total) gives as many frames as the readers do, for
    each kind and ``every``; ``None`` where the file does not say (garbage, a missing path)."""
    cv2.imwrite(str(tmp_path / "a.png"), _ramp())
    files = [tmp_path / "a.png", _write_dicom(tmp_path / "b", np.stack([_ramp()] * 5), "MONOCHROME2"),
             _write_dicom(tmp_path / "c.dcm", _ramp(), "MONOCHROME2"), _write_avi(tmp_path / "d.avi", frames=7)]
    for path in files:
        for every in (1, 2, 3):
            assert count_frames(path, every) == len(list(read_frames(path, every))), (path, every)
    (tmp_path / "fake.avi").write_bytes(b"RIFF....AVI nothing")
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    assert [count_frames(tmp_path / n) for n in ("fake.avi", "junk.dcm", "nowhere.png")] == [None, None, None]


def test_bad_inputs_raise_data_error_naming_the_culprit(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        list(iter_frames(tmp_path))
    with pytest.raises(DataError, match="nowhere"):
        list(iter_frames(tmp_path / "nowhere"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match="broken.png"):
        read_folder(tmp_path)
    with pytest.raises(DataError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    (tmp_path / "fake.avi").write_bytes(b"RIFF....AVI nothing")
    with pytest.raises(DataError, match="fake.avi"):
        list(read_frames(tmp_path / "fake.avi"))
    with pytest.raises(DataError, match="unknown file type"):
        (tmp_path / "x.xyz").write_bytes(b"1")
        read_image(tmp_path / "x.xyz")


def test_skip_bad_keeps_going(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), _ramp())
    (tmp_path / "b.png").write_bytes(b"garbage")
    cv2.imwrite(str(tmp_path / "c.png"), _ramp())
    assert len(read_folder(tmp_path, skip_bad=True)) == 2
    assert "b.png" in caplog.text


def test_random_crops_come_from_the_images() -> None:
    rng = np.random.default_rng(0)
    images = [_ramp(48, 64), 255 - _ramp(40, 40)]
    crops = random_crops(images, 32, 20, rng)
    assert crops.shape == (20, 32, 32) and crops.dtype == np.uint8
    for crop in crops:
        found = any(
            (cv2.matchTemplate(im, crop, cv2.TM_SQDIFF) == 0).any() for im in images
        )
        assert found


def test_window_crops_overlap_half_and_cover_the_image() -> None:
    image = _ramp(64, 96)
    crops = window_crops(image, 32)
    assert crops.shape == (3 * 5, 32, 32)  # rows 0,16,32; cols 0,16,32,48,64
    assert np.array_equal(crops[0], image[:32, :32]) and np.array_equal(crops[-1], image[-32:, -32:])
    odd = window_positions(np.array([[70, 40]]), 32)
    assert sorted({int(t) for _, t, _ in odd}) == [0, 16, 32, 38]  # last window flush with the edge


def test_crop_larger_than_image_names_it(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "small.png"), _ramp(20, 20))
    with pytest.raises(DataError, match="small.png.*smaller than the 32x32 crop"):
        CropSource(tmp_path / "small.png", 32)
    with pytest.raises(DataError, match="smaller than"):
        window_crops(_ramp(20, 20), 32)


def test_crop_source_over_a_folder(tmp_path: Path) -> None:
    for k in range(3):
        cv2.imwrite(str(tmp_path / f"{k}.png"), np.roll(_ramp(64, 64), k, axis=1))
    source = CropSource(tmp_path, 32)
    assert len(source) == 3 * 9
    assert source[0].shape == (32, 32) and np.array_equal(source[9], np.roll(_ramp(64, 64), 1, axis=1)[:32, :32])
    batch = source.sample(8, np.random.default_rng(1))
    assert batch.shape == (8, 32, 32) and batch.dtype == np.uint8
    assert len(CropSource([_ramp(64, 64)], 16)) == 49


def test_pairs_and_truth_of_a_simulated_eval_set(tmp_path: Path) -> None:
    from training.sim import write_dataset

    write_dataset(tmp_path, count=0, size=48, seed=3, paired=True, eval_count=2, progress=False)
    xs, ys = read_pairs(tmp_path / "eval")
    truths = read_truth(tmp_path / "eval")
    assert len(xs) == len(ys) == len(truths) == 2
    assert xs[0].shape == ys[0].shape == truths[0]["vessels"].shape == (48, 48)
    with pytest.raises(DataError, match=r"no x_NNN.png files .*; did you mean .*eval\?"):
        read_pairs(tmp_path)  # the set's folder named instead of its eval/
    (tmp_path / "eval" / "y_001.png").unlink()
    with pytest.raises(DataError, match="y_001.png"):
        read_pairs(tmp_path / "eval")


def test_frames_of_a_missing_path_say_so(tmp_path: Path) -> None:
    from training.data import iter_frames

    with pytest.raises(DataError, match=r"nosuch\.avi: no such file or folder"):
        next(iter_frames(tmp_path / "nosuch.avi"))


def test_a_16_bit_picture_of_12_bit_data_is_read_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from training.data import read_image

    twelve = (np.arange(64 * 64).reshape(64, 64) % 4000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "twelve.png"), twelve)
    with caplog.at_level("WARNING"):
        image = read_image(tmp_path / "twelve.png")
    assert image.max() == 16 and "largest value is 3999 (12-bit data?)" in caplog.text  # the top 8 of 16 bits
    caplog.clear()
    cv2.imwrite(str(tmp_path / "full.png"), twelve * 16)
    with caplog.at_level("WARNING"):
        assert read_image(tmp_path / "full.png").max() == 249
    assert "12-bit" not in caplog.text
