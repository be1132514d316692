"""Scanner screens: only the grey B-mode region is despeckled; overlays stay byte-identical."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.base import FrameError
from stream.roi import despeckle_frame, find_image_region, parse_region, to_uint8


def _blur(image: np.ndarray) -> np.ndarray:
    """A real smoothing filter standing in for the despeckler."""
    return cv2.blur(image, (5, 5))


def _screen() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 240x320 BGR screen: black background, white text, a speckled grey image at (60, 40, 200, 160)
    with a red/blue Doppler box and a yellow ruler inside it."""
    rng = np.random.default_rng(1)
    screen = np.zeros((240, 320, 3), np.uint8)
    speckle = rng.gamma(2.0, 40.0, size=(160, 200)).clip(20, 255).astype(np.uint8)
    screen[40:200, 60:260] = speckle[:, :, None]
    cv2.putText(screen, "MI 0.9 TIS 0.4", (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    screen[90:130, 120:170] = rng.integers(0, 2, size=(40, 50, 1)) * np.array([255, 0, 0]) + np.array(
        [0, 0, 200]
    )
    screen[45:195, 250:254] = (0, 220, 255)
    return screen, (60, 40, 200, 160)


def test_overlay_and_outside_pixels_stay_byte_identical() -> None:
    screen, (x, y, w, h) = _screen()
    out = despeckle_frame(screen, _blur)
    assert out.shape == screen.shape and out.dtype == np.uint8
    colour = screen.max(axis=2) != screen.min(axis=2)
    assert colour.sum() > 2000
    np.testing.assert_array_equal(out[colour], screen[colour])
    outside = np.ones(screen.shape[:2], bool)
    outside[y : y + h, x : x + w] = False
    np.testing.assert_array_equal(out[outside], screen[outside])
    grey_inside = ~colour & ~outside
    assert (out[grey_inside][:, 0] != screen[grey_inside][:, 0]).mean() > 0.5
    np.testing.assert_array_equal(out[~colour][:, 0], out[~colour][:, 2])


def test_image_region_is_found_on_the_screen() -> None:
    screen, expected = _screen()
    found = find_image_region(screen)
    assert found is not None
    assert np.abs(np.subtract(found, expected)).max() <= 2


def test_grey_despeckled_values_come_from_the_region_crop() -> None:
    screen, (x, y, w, h) = _screen()
    out = despeckle_frame(screen, _blur, region=(x, y, w, h))
    expected = _blur(cv2.cvtColor(screen[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY))
    grey = screen[y : y + h, x : x + w].max(axis=2) == screen[y : y + h, x : x + w].min(axis=2)
    np.testing.assert_array_equal(out[y : y + h, x : x + w][grey][:, 1], expected[grey])


def test_grey_frame_with_roi_changes_only_the_box() -> None:
    frame = np.random.default_rng(2).integers(0, 256, size=(64, 80), dtype=np.uint8)
    out = despeckle_frame(frame, _blur, region=(10, 5, 30, 40))
    np.testing.assert_array_equal(out[5:45, 10:40], _blur(frame[5:45, 10:40]))
    mask = np.ones_like(frame, bool)
    mask[5:45, 10:40] = False
    np.testing.assert_array_equal(out[mask], frame[mask])


def test_grey_bgr_frame_becomes_a_grey_frame() -> None:
    frame = np.random.default_rng(3).integers(0, 256, size=(32, 48), dtype=np.uint8)
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(despeckle_frame(bgr, _blur), _blur(frame))


def test_uint16_is_scaled_to_uint8() -> None:
    frame = np.array([[0, 128, 129, 257, 65535]], np.uint16)
    np.testing.assert_array_equal(to_uint8(frame), [[0, 0, 1, 1, 255]])
    assert despeckle_frame(frame, lambda a: a).dtype == np.uint8


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((8, 8), np.float32),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((8, 8, 3), np.uint8) + (0, 0, 255),
    ],
    ids=["float32", "four channels", "no grey region"],
)
def test_frames_it_cannot_handle_raise_frame_error(frame) -> None:
    with pytest.raises(FrameError):
        despeckle_frame(frame, _blur)


def test_region_outside_the_frame_and_bad_roi_text_are_refused() -> None:
    with pytest.raises(FrameError, match="outside"):
        despeckle_frame(np.zeros((16, 16), np.uint8), _blur, region=(20, 0, 4, 4))
    with pytest.raises(ValueError, match="--roi"):
        parse_region("1,2,3")
    assert parse_region("1,2,3,4") == (1, 2, 3, 4)
