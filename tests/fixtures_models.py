"""Session fixtures: tiny random ViT / DINOv2 models saved like Hugging Face checkpoints, and test images.

The processors mirror the real configs at a smaller scale:
google/vit-base-patch16-224 (resize to a square, bilinear, mean/std 0.5) and
facebook/dinov2-small (shortest edge 256 bicubic, center crop 224, ImageNet mean/std).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
LABELS = {  # label -> (background, foreground, shape)
    "circles": ((230, 40, 40), (250, 230, 60), "ellipse"),
    "squares": ((30, 60, 200), (240, 240, 240), "rectangle"),
    "stripes": ((40, 160, 60), (20, 20, 20), "stripes"),
}


def _tiny_kwargs(image_size: int, patch_size: int) -> dict:
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                image_size=image_size, patch_size=patch_size, initializer_range=0.2)


def _processor(kind: str, **kwargs):
    import transformers

    cls = getattr(transformers, f"{kind}ImageProcessorPil", None) or getattr(transformers, f"{kind}ImageProcessor")
    return cls(**kwargs)


def vit_processor(size: int = 32):
    """A ViTImageProcessor configured like google/vit-base-patch16-224, at ``size`` pixels."""
    return _processor("ViT", do_resize=True, size={"height": size, "width": size}, resample=2,
                      do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                      image_mean=[0.5] * 3, image_std=[0.5] * 3)


def dinov2_processor(shortest_edge: int = 73, crop: int = 64):
    """A BitImageProcessor configured like facebook/dinov2-small (256/224 scaled to ``shortest_edge``/``crop``)."""
    return _processor("Bit", do_resize=True, size={"shortest_edge": shortest_edge}, resample=3,
                      do_center_crop=True, crop_size={"height": crop, "width": crop},
                      do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                      image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_convert_rgb=True)


def _save(model, processor, path):
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory):
    """save_pretrained folder of a random 2-layer ViT (hidden 32, 32 px, patch 8) + ViT processor."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    model = ViTModel(ViTConfig(**_tiny_kwargs(32, 8)))
    return _save(model, vit_processor(32), tmp_path_factory.mktemp("tiny_vit"))


@pytest.fixture(scope="session")
def tiny_vit_classifier_dir(tmp_path_factory):
    """save_pretrained folder of a ViTForImageClassification (as the HF trainer writes a fine-tuned ViT)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(1)
    labels = sorted(LABELS)
    config = ViTConfig(**_tiny_kwargs(32, 8), num_labels=len(labels),
                       id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    model = ViTForImageClassification(config)
    return _save(model, vit_processor(32), tmp_path_factory.mktemp("tiny_vit_classifier"))


@pytest.fixture(scope="session")
def tiny_dinov2_dir(tmp_path_factory):
    """save_pretrained folder of a random 2-layer DINOv2 (hidden 32, crop 64, patch 16) + Bit processor."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(2)
    kwargs = _tiny_kwargs(64, 16)
    kwargs.pop("intermediate_size")
    model = Dinov2Model(Dinov2Config(**kwargs, mlp_ratio=2))
    return _save(model, dinov2_processor(73, 64), tmp_path_factory.mktemp("tiny_dinov2"))


def label_image(label: str, seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A small RGB image that looks like the other images of ``label`` (colors + shape), varied by ``seed``."""
    background, foreground, shape = LABELS[label]
    rng = np.random.default_rng(seed)
    width, height = size
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    dx, dy = (int(v) for v in rng.integers(-8, 9, 2))
    if shape == "stripes":
        for x in range(dx % 16, width, 16):
            draw.rectangle([x, 0, x + 7, height], fill=foreground)
    else:
        box = [width // 4 + dx, height // 4 + dy, 3 * width // 4 + dx, 3 * height // 4 + dy]
        getattr(draw, shape)(box, fill=foreground)
    noise = rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.float64) + noise, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    """The bytes of ``image`` saved as ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Folder with one sub-folder per label (circles, squares, stripes), 6 images each, JPEG and PNG.

    Images of one label share colors and shape, so nearest neighbours share the label.
    """
    root = tmp_path_factory.mktemp("images")
    for n, label in enumerate(sorted(LABELS)):
        folder = root / label
        folder.mkdir()
        for i in range(6):
            image = label_image(label, seed=100 * n + i)
            if i % 3 == 2:
                image.save(folder / f"{label}_{i}.png")
            else:
                image.save(folder / f"{label}_{i}.jpg", quality=90)
    return root


def natural_image(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photo-like RGB image: smooth color waves, gradients, noise and filled ellipses."""
    from PIL import ImageFilter

    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = np.stack([
        127 + 100 * np.sin(x / rng.uniform(20, 90) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(20, 90)),
        127 + 100 * np.cos((x + y) / rng.uniform(30, 120)),
        x / width * 200 + y / height * 55,
    ], -1) + rng.normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.clip(waves, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, width - 50)), int(rng.integers(0, height - 50))
        x1, y1 = x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))
        draw.ellipse([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return image.filter(ImageFilter.GaussianBlur(1))
