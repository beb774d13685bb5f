"""vss_core.embed.embedder and vss_core.embed.preprocess with tiny random ViT / DINOv2 checkpoints."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_models import dinov2_processor, encode, label_image, natural_image, vit_processor
from tests.test_images import bad_files, with_orientation
from vss_core.embed.embedder import Embedder, EmbedResult
from vss_core.embed.preprocess import FastPath, ProcessorPath, make_preprocessor, unsupported_reason
from vss_core.errors import ConfigError, ImageError, ModelLoadError
from vss_core.files import images

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


@pytest.fixture(scope="module")
def vit(tiny_vit_dir):
    return Embedder(tiny_vit_dir, device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def dino(tiny_dinov2_dir):
    return Embedder(tiny_dinov2_dir, device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def natural_jpegs():
    return [encode(natural_image(seed), quality=90) for seed in range(6)]


@pytest.fixture(scope="module")
def folder_files(image_folder):
    return sorted(p for p in image_folder.rglob("*") if p.is_file())


def reference(model_dir, pil_images, classifier=False):
    """What fastapi-vss computes: model(**processor(images)).last_hidden_state[:, 0]."""
    import torch
    from transformers import AutoImageProcessor, AutoModel, ViTForImageClassification

    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = (ViTForImageClassification if classifier else AutoModel).from_pretrained(model_dir).eval()
    with torch.no_grad():
        inputs = processor(images=pil_images, return_tensors="pt")
        outputs = model.vit(**inputs) if classifier else model(**inputs)
    return outputs.last_hidden_state[:, 0].numpy()


def cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def test_loads_vit_dinov2_and_classifier_checkpoints(tiny_vit_dir, tiny_dinov2_dir, tiny_vit_classifier_dir):
    for model_dir in (tiny_vit_dir, tiny_dinov2_dir, tiny_vit_classifier_dir):
        embedder = Embedder(str(model_dir), device="cpu")
        assert (embedder.dim, embedder.device, embedder.dtype) == (32, "cpu", "float32")
        assert embedder.model_name == str(model_dir) and embedder.fast
        assert type(embedder._model).__name__ in ("ViTModel", "Dinov2Model")


@pytest.mark.parametrize("name", ["tiny_vit_dir", "tiny_dinov2_dir"])
def test_cls_embedding_matches_transformers(name, request, folder_files):
    model_dir = request.getfixturevalue(name)
    expected = reference(model_dir, [Image.open(p).convert("RGB") for p in folder_files])
    exact = Embedder(model_dir, device="cpu", fast=False).embed(folder_files)
    assert exact.vectors.dtype == np.float32 and exact.vectors.shape == (len(folder_files), 32)
    np.testing.assert_allclose(exact.vectors, expected, atol=1e-5)
    pngs = [i for i, p in enumerate(folder_files) if p.suffix == ".png"]
    fast = Embedder(model_dir, device="cpu").embed([folder_files[i] for i in pngs])
    assert cosines(fast.vectors, expected[pngs]).min() > 0.99999  # crop fused into resize: 1-level rounding
    np.testing.assert_allclose(fast.vectors, expected[pngs], atol=5e-3)


def test_classifier_checkpoint_embeds_like_its_vit(tiny_vit_classifier_dir, folder_files):
    expected = reference(tiny_vit_classifier_dir, [Image.open(p).convert("RGB") for p in folder_files], True)
    got = Embedder(tiny_vit_classifier_dir, device="cpu", fast=False).embed(folder_files).vectors
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny_vit_dir", "tiny_dinov2_dir"])
def test_fast_path_matches_processor_on_photos(name, request, natural_jpegs):
    model_dir = request.getfixturevalue(name)
    fast = Embedder(model_dir, device="cpu").embed(natural_jpegs).vectors
    slow = Embedder(model_dir, device="cpu", fast=False).embed(natural_jpegs).vectors
    assert cosines(fast, slow).min() >= 0.999
    normed = fast / np.linalg.norm(fast, axis=1, keepdims=True)
    assert (normed @ normed.T)[np.triu_indices(len(fast), 1)].mean() < 0.9  # the model does tell images apart


@pytest.mark.parametrize("torch_resize", [True, False], ids=["torch-resize", "pil-resize"])
@pytest.mark.parametrize("processor, size, draft", [
    (vit_processor(224), (640, 480), True),
    (vit_processor(224), (643, 481), True),
    (dinov2_processor(256, 224), (640, 480), False),
    (dinov2_processor(256, 224), (480, 800), False),
    (dinov2_processor(256, 224), (1600, 1200), True),
])
def test_fast_tensors_match_processor_at_real_sizes(processor, size, draft, torch_resize):
    fast, slow = make_preprocessor(processor, torch_resize=torch_resize), make_preprocessor(processor, fast=False)
    assert isinstance(fast, FastPath) and isinstance(slow, ProcessorPath)
    level = processor.rescale_factor / min(processor.image_std)  # one 8-bit step in model input units
    for seed in range(2):
        data = encode(natural_image(seed, size), quality=90)
        a, b = fast.load(data), slow.load(data)
        assert a.shape == b.shape == (3, 224, 224) and a.dtype == np.float32
        diff = np.abs(a - b)
        assert cosines(a.reshape(1, -1), b.reshape(1, -1))[0] > 0.9995
        if draft:  # JPEG DCT-scaled decode: under one 8-bit level on average
            assert diff.mean() < level, diff.mean() / level
        else:  # crop fused into the resize: rounding differences of at most one level
            assert diff.mean() < 0.25 * level and diff.max() < 1.01 * level


def test_unsupported_processor_configs_fall_back():
    assert unsupported_reason(vit_processor(32)) is None
    assert unsupported_reason(dinov2_processor()) is None
    padded = vit_processor(32)
    padded.do_pad = True
    assert "do_pad" in unsupported_reason(padded)
    bounded = dinov2_processor()
    bounded.size = {"shortest_edge": 73, "longest_edge": 90}
    assert "size" in unsupported_reason(bounded)
    odd = vit_processor(32)
    odd.resample = 42
    assert "resample" in unsupported_reason(odd)
    custom = type("CustomImageProcessor", (type(vit_processor()),), {"resize": lambda self, *a, **k: None})()
    assert "own preprocessing" in unsupported_reason(custom)
    for processor in (padded, bounded, odd, custom):
        assert isinstance(make_preprocessor(processor), ProcessorPath)


def test_embedder_falls_back_to_processor(tiny_dinov2_dir, tmp_path, natural_jpegs):
    model_dir = tmp_path / "bounded"
    shutil.copytree(tiny_dinov2_dir, model_dir)
    config_file = model_dir / "preprocessor_config.json"
    config = json.loads(config_file.read_text())
    config["size"] = {"shortest_edge": 73, "longest_edge": 90}
    config_file.write_text(json.dumps(config))
    embedder = Embedder(model_dir, device="cpu")
    assert not embedder.fast
    expected = reference(model_dir, [images.decode(d) for d in natural_jpegs[:3]])
    np.testing.assert_allclose(embedder.embed(natural_jpegs[:3]).vectors, expected, atol=1e-5)


def test_bad_images_fail_per_file_and_the_batch_goes_on(vit, tmp_path, folder_files):
    bad = bad_files(tmp_path)
    good = folder_files[:3]
    sources = [good[0], *bad.values(), good[1], good[2].read_bytes()]
    result = vit.embed(sources)
    assert result.ok == [0, len(sources) - 2, len(sources) - 1]
    assert [e.index for e in result.errors] == list(range(1, len(bad) + 1))
    assert all(isinstance(e, ImageError) for e in result.errors)
    assert [e.source for e in result.errors] == [str(p) for p in bad.values()]
    np.testing.assert_allclose(result.vectors, vit.embed(good).vectors, atol=1e-6)


def test_exif_rotated_image_embeds_like_upright(vit, dino):
    upright = label_image("squares", 7, size=(160, 120))
    rotated = with_orientation(upright, 6, "PNG")
    for embedder in (vit, dino):
        np.testing.assert_allclose(embedder.embed([rotated]).vectors, embedder.embed([encode(upright, "PNG")]).vectors,
                                   atol=1e-5)
    photo = natural_image(3, (643, 481))
    rotated_jpeg = with_orientation(photo, 6, "JPEG", quality=95)
    for embedder in (vit, dino):
        got = embedder.embed([rotated_jpeg, encode(photo, quality=95)]).vectors
        assert cosines(got[:1], got[1:])[0] >= 0.999


def test_bytes_file_objects_and_pil_images(vit, folder_files):
    jpeg = next(p for p in folder_files if p.suffix == ".jpg")
    png = next(p for p in folder_files if p.suffix == ".png")
    data = jpeg.read_bytes()
    result = vit.embed([jpeg, data, io.BytesIO(data), str(png), Image.open(png)])
    v = result.vectors
    assert result.ok == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(v[0], v[1])
    np.testing.assert_array_equal(v[0], v[2])
    np.testing.assert_allclose(v[3], v[4], atol=1e-6)
    np.testing.assert_allclose(vit.embed_images([Image.open(png)]), v[3:4], atol=1e-6)
    assert vit.embed_images([]).shape == (0, 32)


def test_concurrent_calls_give_equal_results(vit, folder_files):
    expected = vit.embed(folder_files).vectors
    results, errors = {}, []

    def work(n):
        try:
            results[n] = [vit.embed(folder_files).vectors for _ in range(3)]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 3
    for runs in results.values():
        for vectors in runs:
            np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_missing_model_errors(tmp_path, tiny_vit_dir):
    with pytest.raises(ModelLoadError) as info:
        Embedder("nonexistent-org/nope", device="cpu")
    message = str(info.value)
    assert "nonexistent-org/nope" in message and "vss.model" in message and "save_pretrained" in message
    assert "HF_HUB_OFFLINE" in message
    with pytest.raises(ModelLoadError, match="has no config.json"):
        Embedder(tmp_path, device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        Embedder(str(tmp_path / "models" / "vit"), device="cpu")
    no_processor = tmp_path / "weights_only"
    shutil.copytree(tiny_vit_dir, no_processor)
    (no_processor / "preprocessor_config.json").unlink()
    with pytest.raises(ModelLoadError, match="preprocessor_config.json"):
        Embedder(no_processor, device="cpu")
    (no_processor / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="weights_only"):
        Embedder(no_processor, device="cpu")


def test_batches_keep_order_across_boundaries(vit, folder_files, tmp_path):
    files = folder_files[:7]
    alone = np.concatenate([vit.embed([f]).vectors for f in files])
    parts = list(vit.iter_embed(files))
    assert [p.ok for p in parts] == [[0, 1, 2, 3], [4, 5, 6]]
    np.testing.assert_allclose(np.concatenate([p.vectors for p in parts]), alone, atol=1e-5)
    broken = files[:3] + [tmp_path / "missing.jpg", tmp_path / "gone.png"] + files[3:]
    result = vit.embed(broken)
    assert result.ok == [0, 1, 2, 5, 6, 7, 8] and [e.index for e in result.errors] == [3, 4]
    np.testing.assert_allclose(result.vectors, alone, atol=1e-5)
    empty = vit.embed([])
    assert isinstance(empty, EmbedResult) and empty.vectors.shape == (0, 32) and empty.ok == []


def test_prefetch_is_bounded(vit, folder_files):
    pulled = []

    def sources():
        for i in range(40):
            pulled.append(i)
            yield folder_files[i % len(folder_files)]

    stream = vit.iter_embed(sources())
    first = next(stream)
    assert first.ok == [0, 1, 2, 3]
    assert len(pulled) <= (vit.prefetch + 1) * vit.batch_size < 40
    stream.close()
    assert sum(len(p.ok) for p in vit.iter_embed(sources())) == 40


def test_device_and_batch_size_settings(tiny_vit_dir, monkeypatch):
    with pytest.raises(ModelLoadError, match="unknown device"):
        Embedder(tiny_vit_dir, device="tpu")
    import torch

    assert Embedder(tiny_vit_dir).device == ("cuda" if torch.cuda.is_available() else "cpu")

    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            Embedder(tiny_vit_dir, device="cuda:0")
    monkeypatch.setenv("BATCH_SIZE", "5")
    assert Embedder(tiny_vit_dir, device="cpu").batch_size == 5
    monkeypatch.setenv("BATCH_SIZE", "lots")
    with pytest.raises(ConfigError):
        Embedder(tiny_vit_dir, device="cpu")
    with pytest.raises(ConfigError):
        Embedder(tiny_vit_dir, device="cpu", batch_size=0)


@pytest.mark.parametrize("name", ["vit", "dino"])
def test_nearest_neighbours_share_the_label(name, request, folder_files):
    vectors = request.getfixturevalue(name).embed(folder_files).vectors
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = normed @ normed.T
    np.fill_diagonal(similarity, -2)
    labels = [p.parent.name for p in folder_files]
    assert all(labels[j] == labels[i] for i, j in enumerate(similarity.argmax(1)))


def test_import_is_cheap():
    code = "import sys, vss_core.embed.embedder; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_cuda_half_precision_matches_cpu(tiny_vit_dir, tiny_dinov2_dir, natural_jpegs):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    for model_dir in (tiny_vit_dir, tiny_dinov2_dir):
        gpu = Embedder(model_dir, device="auto")
        assert gpu.device == "cuda" and gpu.dtype == "float16" and gpu.workers >= 1
        on_gpu = gpu.embed(natural_jpegs)
        on_cpu = Embedder(model_dir, device="cpu").embed(natural_jpegs)
        assert on_gpu.vectors.dtype == np.float32 and on_gpu.ok == on_cpu.ok
        assert cosines(on_gpu.vectors, on_cpu.vectors).min() >= 0.999


def test_unreachable_hub_fails_at_once_without_retries(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="hub could not be reached") as info:
        Embedder("some-org/not-cached-model", device="cpu")
    assert "some-org/not-cached-model" in str(info.value) and "vss.model" in str(info.value)
    assert time.monotonic() - started < 20  # hub retries with backoff would take minutes


_THREADS_PROBE = """
import json, sys, threading
from pathlib import Path
from vss_core.embed.embedder import Embedder
embedder = Embedder(sys.argv[1], device="cpu", batch_size=4, workers=2)
result = embedder.embed(sorted(p for p in Path(sys.argv[2]).rglob("*") if p.is_file()))
import torch
later = []
thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
thread.start(); thread.join()
print(json.dumps({"embedded": len(result.ok), "main": torch.get_num_threads(), "new_thread": later[0]}))
"""


def test_decode_threads_leave_the_models_torch_threads_alone(tiny_vit_dir, image_folder):
    """Embedding as the first torch work of a process must not shrink the main thread's thread pool
    (torch.set_num_threads in a decode thread once made the CLI and the app run at half speed)."""
    default = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                 capture_output=True, text=True, check=True).stdout)
    if default < 2:
        pytest.skip("torch uses one thread on this machine: nothing to shrink")
    out = subprocess.run([sys.executable, "-c", _THREADS_PROBE, str(tiny_vit_dir), str(image_folder)],
                         capture_output=True, text=True, check=True, timeout=300)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe == {"embedded": 18, "main": default, "new_thread": default}


def test_a_decode_thread_runs_torch_on_one_thread():
    code = ("import threading, torch\nfrom vss_core.embed.decode_pool import one_torch_thread\nseen = []\n"
            "def decode():\n    one_torch_thread(); seen.append(torch.get_num_threads())\n"
            "t = threading.Thread(target=decode); t.start(); t.join()\nprint(seen[0], torch.get_num_threads())")
    default = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                 capture_output=True, text=True, check=True).stdout)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["1", str(default)]


def test_plain_jpegs_take_the_dct_scaled_decoder_and_others_do_not():
    from vss_core.embed.preprocess import _simplejpeg

    plain = encode(natural_image(0, (643, 481)), quality=90)
    image, full_size, box = _simplejpeg(plain, (224, 224))
    assert image.shape == (241, 322, 3) and full_size == (643, 481) and box == (0.0, 0.0, 321.5, 240.5)
    assert _simplejpeg(plain, None)[0].shape == (481, 643, 3)
    rotated = with_orientation(natural_image(1, (320, 240)), 6, "JPEG", quality=90)
    assert _simplejpeg(rotated, (224, 224)) is None  # EXIF rotation: PIL's path applies it
    assert _simplejpeg(encode(natural_image(2, (320, 240)).convert("CMYK")), (224, 224)) is None
    assert _simplejpeg(encode(natural_image(3, (320, 240)), "PNG"), (224, 224)) is None
