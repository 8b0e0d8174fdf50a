"""Image augmentations that make SeVa's and BPO's negatives: the policy answers a corrupted image.

- ``diffusion_noise``: the forward diffusion process on the CLIP-normalised image,
  x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps, at step t of DDPM's 1000-step linear schedule
  (beta from 1e-4 to 0.02). SeVa finds steps 500-800 best; BPO's image weakening uses ~900.
- ``moco``: MoCo v2's chain: colour jitter (p 0.8), random grayscale (p 0.2), Gaussian blur (p 0.5).
- ``random_resized_crop`` and ``horizontal_flip``.

Every function is seeded (numpy and PIL only: torchvision's CUDA build does not load beside the CPU torch),
so a stage redone after a crash sees the same corrupted images.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

KINDS = ("diffusion", "moco", "crop", "flip")
STEPS = 1000
# The OpenAI CLIP normalisation, which the zoo's and LLaVA's image processors apply.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])
_ALPHA_BAR = np.cumprod(1.0 - np.linspace(1e-4, 0.02, STEPS))


def alpha_bar(step: int) -> float:
    """abar_t of the 1000-step linear schedule: the share of the clean signal's variance left at step t."""
    if not 0 <= step < STEPS:
        raise ValueError(f"diffusion step {step} is outside the schedule's 0..{STEPS - 1}")
    return float(_ALPHA_BAR[step])


def diffusion_noise(image: Image.Image, step: int, seed: int) -> Image.Image:
    """The image after ``step`` steps of forward diffusion on its CLIP-normalised tensor."""
    x = (np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0 - CLIP_MEAN) / CLIP_STD
    eps = np.random.default_rng(seed).standard_normal(x.shape)
    a = alpha_bar(step)
    noised = np.sqrt(a) * x + np.sqrt(1.0 - a) * eps
    # Back to pixels, clipped to [0, 255]: the noised image goes to a served model (vLLM) as an image, whose
    # processor normalises it again, so values outside the pixel range cannot be passed on.
    pixels = np.clip((noised * CLIP_STD + CLIP_MEAN) * 255.0, 0, 255)
    return Image.fromarray(np.round(pixels).astype(np.uint8), "RGB")


def color_jitter(image: Image.Image, rng: np.random.Generator, strength: float = 0.4, hue: float = 0.1) -> Image.Image:
    """Brightness, contrast and saturation scaled by U(1-strength, 1+strength), hue shifted by U(-hue, hue),
    in a random order (as torchvision's ColorJitter)."""
    for op in rng.permutation(4):
        if op == 3:
            h, s, v = image.convert("HSV").split()
            shift = int(round(rng.uniform(-hue, hue) * 255))
            h = h.point(lambda value: (value + shift) % 256)
            image = Image.merge("HSV", (h, s, v)).convert("RGB")
        else:
            enhancer = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)[op]
            image = enhancer(image).enhance(rng.uniform(1 - strength, 1 + strength))
    return image


def moco(image: Image.Image, seed: int) -> Image.Image:
    """MoCo v2's appearance chain: colour jitter (p 0.8), grayscale (p 0.2), blur sigma U(0.1, 2) (p 0.5)."""
    rng = np.random.default_rng(seed)
    image = image.convert("RGB")
    if rng.random() < 0.8:
        image = color_jitter(image, rng)
    if rng.random() < 0.2:
        image = image.convert("L").convert("RGB")
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
    return image


def random_resized_crop(image: Image.Image, seed: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)) -> Image.Image:
    """A crop of U(scale) of the area with a log-uniform aspect ratio, resized back to the image's size."""
    rng = np.random.default_rng(seed)
    width, height = image.size
    for _ in range(10):
        area = width * height * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w, h = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return image.crop((left, top, left + w, top + h)).resize(image.size, Image.BICUBIC)
    return image.copy()  # no crop of that shape fits (torchvision falls back to a centre crop; the whole image here)


def horizontal_flip(image: Image.Image) -> Image.Image:
    return image.transpose(Image.FLIP_LEFT_RIGHT)


def augment(image: Image.Image, kind: str, seed: int, step: int = 500) -> Image.Image:
    """One augmentation of ``kind`` (diffusion | moco | crop | flip); ``step`` is the diffusion step."""
    if kind == "diffusion":
        return diffusion_noise(image, step, seed)
    if kind == "moco":
        return moco(image, seed)
    if kind == "crop":
        return random_resized_crop(image, seed)
    if kind == "flip":
        return horizontal_flip(image)
    raise ValueError(f"unknown augmentation {kind!r}; expected one of {KINDS}")
