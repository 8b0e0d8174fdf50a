import numpy as np
import pytest
from PIL import Image

from evaluation.shapes import ShapesWorld
from feedback.augment import (CLIP_MEAN, CLIP_STD, KINDS, alpha_bar, augment, diffusion_noise, horizontal_flip, moco,
                              random_resized_crop)


@pytest.fixture(scope="module")
def image():
    return ShapesWorld(0).scene("prompts", 0).render()


def pixels(im):
    return np.asarray(im, dtype=np.float64)


def test_schedule_is_ddpm_linear():
    betas = np.linspace(1e-4, 0.02, 1000)
    assert alpha_bar(0) == pytest.approx(1 - 1e-4)
    assert alpha_bar(499) == pytest.approx(np.prod(1 - betas[:500]))
    assert 1 > alpha_bar(100) > alpha_bar(500) > alpha_bar(900) > 0
    with pytest.raises(ValueError, match="1000"):
        alpha_bar(1000)


def test_diffusion_noise_is_the_forward_process_on_the_clip_normalised_image(image):
    noised = diffusion_noise(image, 500, seed=3)
    x = (pixels(image) / 255 - CLIP_MEAN) / CLIP_STD
    eps = np.random.default_rng(3).standard_normal(x.shape)
    a = alpha_bar(500)
    expected = np.clip(((np.sqrt(a) * x + np.sqrt(1 - a) * eps) * CLIP_STD + CLIP_MEAN) * 255, 0, 255)
    assert np.abs(pixels(noised) - expected).max() <= 0.5  # rounding to 8-bit pixels only
    assert noised.size == image.size and noised.mode == "RGB"


def test_more_steps_leave_less_of_the_image(image):
    def distance(step):
        return np.abs(pixels(diffusion_noise(image, step, seed=0)) - pixels(image)).mean()
    assert distance(10) < distance(500) < distance(900)


def test_augmentations_are_seeded_and_differ_by_seed(image):
    for kind in ("diffusion", "moco", "crop"):
        assert augment(image, kind, 7).tobytes() == augment(image, kind, 7).tobytes(), kind
        assert any(augment(image, kind, 7).tobytes() != augment(image, kind, s).tobytes() for s in range(8, 12)), kind


def test_flip_mirrors_and_crop_keeps_the_size(image):
    assert np.array_equal(pixels(horizontal_flip(image)), pixels(image)[:, ::-1])
    cropped = random_resized_crop(image, seed=1)
    assert cropped.size == image.size and cropped.tobytes() != image.tobytes()


def test_moco_chain_changes_appearance_and_keeps_the_size(image):
    changed = [moco(image, seed) for seed in range(6)]
    assert all(im.size == image.size and im.mode == "RGB" for im in changed)
    assert sum(im.tobytes() != image.tobytes() for im in changed) >= 4
    grey = Image.new("RGB", (8, 8), (100, 100, 100))
    assert moco(grey, 0).size == (8, 8)


def test_unknown_kind_is_named(image):
    assert set(KINDS) == {"diffusion", "moco", "crop", "flip"}
    with pytest.raises(ValueError, match="'blur'"):
        augment(image, "blur", 0)
