"""vss_core.embed.decode_pool: decoding in worker processes, uint8 batches through shared memory."""

from __future__ import annotations

import io
import os
import signal
import time

import numpy as np
import pytest

from tests.fixtures_models import encode, label_image, natural_image, vit_processor
from vss_core.embed.decode_pool import ProcessDecoder
from vss_core.embed.embedder import Embedder
from vss_core.embed.preprocess import make_preprocessor
from vss_core.errors import ConfigError


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for seed in range(10):
        path = folder / f"photo_{seed}.jpg"
        path.write_bytes(encode(natural_image(seed, (320, 240)), quality=90))
        paths.append(path)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return paths, folder / "broken.jpg"


@pytest.mark.parametrize("model", ["tiny_vit_dir", "tiny_dinov2_dir"])
def test_processes_embed_like_threads(model, request, photos):
    paths, broken = photos
    model_dir = request.getfixturevalue(model)
    sources = [paths[0], str(paths[1]), paths[2].read_bytes(), io.BytesIO(paths[3].read_bytes()), broken,
               label_image("circles", 1), *paths[4:]]
    threads = Embedder(model_dir, device="cpu", batch_size=4, decode="threads")
    processes = Embedder(model_dir, device="cpu", batch_size=4, decode="processes", workers=2)
    assert (threads.decode, processes.decode) == ("threads", "processes")
    want, got = threads.embed(sources), processes.embed(sources)
    assert got.ok == want.ok == [i for i in range(len(sources)) if i != 4]
    assert [e.index for e in got.errors] == [e.index for e in want.errors] == [4] and "broken.jpg" in str(got.errors[0])
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-4)
    again = processes.embed(paths)  # the same worker processes serve the next call
    assert again.ok == list(range(len(paths)))


def test_a_caller_that_stops_early_leaves_the_processes_usable(tiny_vit_dir, photos):
    paths, _ = photos
    embedder = Embedder(tiny_vit_dir, device="cpu", batch_size=2, decode="processes", prefetch=1)
    stream = embedder.iter_embed(paths * 3)
    assert next(stream).ok == [0, 1]
    stream.close()
    assert embedder.embed(paths).ok == list(range(len(paths)))


def test_a_killed_worker_fails_only_the_image_it_was_on(photos):
    paths, _ = photos
    processor = vit_processor(32)
    path = make_preprocessor(processor, torch_resize=False)
    decoder = ProcessDecoder(path.spec, False, workers=1, batch_size=len(paths), slots=1)
    try:
        ticket = decoder.submit(0, paths)
        os.kill(decoder._workers[0].process.pid, signal.SIGKILL)  # still starting: it holds every image
        pixels, ok, errors = decoder.collect(ticket)
        assert [e.index for e in errors] == [0] and "died" in errors[0].reason and str(paths[0]) in str(errors[0])
        assert ok == list(range(1, len(paths)))
        np.testing.assert_array_equal(pixels, np.stack([path.load_uint8(p) for p in paths[1:]]))
        decoder.release(ticket)
    finally:
        decoder.close()


def test_decode_mode_is_chosen_by_device_and_preprocessing(tiny_vit_dir):
    assert Embedder(tiny_vit_dir, device="cpu", fast=False, decode="processes").decode == "threads"
    auto = Embedder(tiny_vit_dir, device="cpu").decode
    assert auto == ("processes" if len(os.sched_getaffinity(0)) >= 8 else "threads")
    with pytest.raises(ConfigError, match="decode mode"):
        Embedder(tiny_vit_dir, device="cpu", decode="gpu")


def test_a_worker_killed_mid_chunk_keeps_what_it_decoded(tmp_path):
    big = encode(natural_image(7, (3000, 2000)), quality=95)
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"big_{i}.jpg")
        paths[-1].write_bytes(big)
    path = make_preprocessor(vit_processor(32), torch_resize=False)
    decoder = ProcessDecoder(path.spec, False, workers=1, batch_size=len(paths), slots=1)
    try:
        warm = decoder.submit(0, paths[:1])  # the worker is up and has decoded once
        assert decoder.collect(warm)[1] == [0]
        decoder.release(warm)
        ticket = decoder.submit(0, paths)
        worker = decoder._workers[0].process
        deadline = time.monotonic() + 60
        while decoder._progress[ticket.slot, 0] == 0 and time.monotonic() < deadline:  # the first image is done ...
            pass
        os.kill(worker.pid, signal.SIGSTOP)  # ... and the worker stopped somewhere inside the chunk
        done = int((decoder._progress[ticket.slot, :len(paths)] != 0).sum())
        assert 1 <= done < len(paths)
        os.kill(worker.pid, signal.SIGKILL)
        pixels, ok, errors = decoder.collect(ticket)
        assert [e.index for e in errors] == [done] and "died" in errors[0].reason
        assert ok == [i for i in range(len(paths)) if i != done]
        np.testing.assert_array_equal(pixels, np.stack([path.load_uint8(paths[0])] * len(ok)))
        decoder.release(ticket)
    finally:
        decoder.close()


def test_a_decode_process_never_runs_the_parent_s_main_script(tmp_path, tiny_vit_dir, photos, monkeypatch):
    """Streamlit's script runner makes the app's page the ``__main__`` module (file, no spec): a spawned
    child would run it.  Here that script leaves a mark; the decode processes must not."""
    import sys
    import types

    mark = tmp_path / "ran"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(mark)!r}, 'w').write('the app ran in a decode process')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    paths, _ = photos
    result = Embedder(tiny_vit_dir, device="cpu", batch_size=4, decode="processes", workers=2).embed(paths[:4])
    assert result.ok == [0, 1, 2, 3] and not mark.exists()
