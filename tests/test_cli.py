import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vss_core.cli import main


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, tiny_vit_dir):
    root = tmp_path_factory.mktemp("cli")
    config = root / "config"
    config.mkdir()
    (config / "plankton.yaml").write_text(f"vss:\n  project: plankton\n  model: {tiny_vit_dir}\n")
    (config / "broken.yaml").write_text("vss: {project: broken}\n")
    env = {"CONFIG_PATH": str(config), "VSS_DATA_DIR": str(root / "data"), "BATCH_SIZE": "4"}
    yield root, env
    from vss_core.redis.server import embedded_server

    embedded_server(root / "data" / "plankton").stop()


@pytest.fixture
def run(cli_env, monkeypatch, capsys):
    _, env = cli_env
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def invoke(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def loaded(run, image_folder):
    from vss_core.config.projects import load_projects
    from vss_core.redis.exemplars import connect_store

    connect_store(load_projects().get("plankton")).client.flushall()
    code, out, err = run("load", "plankton", image_folder)
    assert code == 0, err
    return out


def test_load_prints_counts_and_rerun_skips(run, loaded, image_folder):
    assert "loaded 18, skipped 0 (already loaded), failed 0" in loaded
    code, out, _ = run("load", "plankton", image_folder)
    assert code == 0 and "loaded 0, skipped 18" in out


def test_load_csv_lists_failures_and_exits_nonzero(run, loaded, tmp_path, image_folder):
    (tmp_path / "bad.txt").write_text("hello")
    (tmp_path / "list.csv").write_text(f"path,label\n{image_folder}/circles/circles_0.jpg,circles\n"
                                       f"{tmp_path}/bad.txt,circles\n")
    code, out, _ = run("load", "plankton", "--csv", tmp_path / "list.csv")
    assert code == 1
    assert "loaded 0, skipped 1 (already loaded), failed 1" in out
    assert f"failed: {tmp_path}/bad.txt:" in out


def test_projects_lists_counts_and_reports_bad_file(run, loaded):
    code, out, err = run("projects")
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("plankton"))
    assert "embedded" in line and line.split()[-1] == "18"
    assert "broken.yaml" in err and "'vss.model'" in err


def test_knn_json_has_fastapi_shape_and_is_written_under_output_path(run, loaded, image_folder, cli_env):
    queries = [image_folder / "stripes" / "stripes_0.jpg", image_folder / "squares" / "squares_1.jpg"]
    code, out, _ = run("knn", "plankton", *queries, "--top-n", "3", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["filenames"] == [str(q) for q in queries]
    assert [len(p) for p in data["predictions"]] == [3, 3] and [len(i) for i in data["ids"]] == [3, 3]
    assert data["predictions"][0][0] == "stripes" and data["predictions"][1][0] == "squares"
    assert data["scores"][0][0] == pytest.approx(0.0, abs=1e-3)  # a cosine distance: the image itself
    written = json.loads(open(data["output_path"]).read())
    assert written["predictions"] == data["predictions"] and written["scores"] == data["scores"]
    root, _ = cli_env
    assert data["output_path"].startswith(str(root / "data" / "plankton" / "output") + "/")


def test_knn_text_output_and_bad_image(run, loaded, image_folder, tmp_path):
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    code, out, err = run("knn", "plankton", image_folder / "circles" / "circles_1.jpg", tmp_path / "corrupt.jpg")
    assert code == 1
    assert "suggested circles" in out and " 1. circles" in out
    assert f"{tmp_path}/corrupt.jpg" in err


def test_embed_prints_vectors(run, tiny_vit_dir, image_folder):
    from vss_core.embed.embedder import Embedder

    image = image_folder / "circles" / "circles_0.jpg"
    code, out, _ = run("embed", "plankton", image)
    data = json.loads(out)
    assert code == 0 and data["filenames"] == [str(image)]
    dim = Embedder(str(tiny_vit_dir), device="cpu").dim
    assert len(data["embeddings"][0]) == dim


def test_embed_json_is_the_rest_embed_payload_with_the_unreadable_files_named(run, image_folder, tmp_path):
    image, corrupt = image_folder / "circles" / "circles_0.jpg", tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    code, out, err = run("embed", "plankton", image, corrupt)
    data = json.loads(out)
    assert code == 1 and str(corrupt) in err
    assert list(data) == ["filenames", "embeddings", "errors"]  # what POST /embed answers
    assert data["filenames"] == [str(image)] and len(data["embeddings"]) == 1
    assert list(data["errors"]) == [str(corrupt)] and data["errors"][str(corrupt)] in err


def test_stats_shows_dimension_algorithm_and_labels(run, loaded):
    code, out, _ = run("stats", "plankton")
    assert code == 0
    assert "algorithm: FLAT" in out and "vectors:   18" in out
    assert any(line.split() == ["circles", "6"] for line in out.splitlines())


@pytest.mark.parametrize("argv, words", [
    (["stats", "nope"], "no project named 'nope'"),
    (["stats", "broken"], "'vss.model'"),
    (["load", "plankton", "/no/such/folder"], "not a folder"),
    (["load", "plankton", "--csv", "/no/such.csv"], "cannot read CSV"),
])
def test_bad_input_is_one_line_error(run, argv, words):
    code, out, err = run(*argv)
    assert code == 1 and words in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_module_entry_point_runs_as_a_process(cli_env):
    root, env = cli_env
    proc = subprocess.run([sys.executable, "-m", "vss_core", "knn", "plankton", "x.jpg", "--top-n", "0"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "between 1 and 1000" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "vss_core", "stats", "plankton"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "dimension:" in proc.stdout


def test_fetch_model_saves_a_loadable_copy(run, tiny_vit_dir, tmp_path):
    from vss_core.embed.embedder import Embedder

    code, out, _ = run("fetch-model", tiny_vit_dir, tmp_path / "copy")
    assert code == 0 and f"vss.model: {tmp_path / 'copy'}" in out
    assert Embedder(str(tmp_path / "copy"), device="cpu").dim == Embedder(str(tiny_vit_dir), device="cpu").dim
    code, _, err = run("fetch-model", "some-org/not-cached", tmp_path / "x")
    assert code == 1 and "some-org/not-cached" in err


def test_predict_writes_the_label_sheet_and_reruns_skip(run, loaded, tmp_path, image_folder):
    import csv

    queries = tmp_path / "q"
    (queries / "deeper").mkdir(parents=True)
    for label in ("circles", "squares"):
        (queries / f"{label}.jpg").write_bytes((image_folder / label / f"{label}_0.jpg").read_bytes())
    (queries / "deeper" / "stripes.jpg").write_bytes((image_folder / "stripes" / "stripes_1.jpg").read_bytes())
    (queries / "notes.txt").write_text("not an image")
    out_csv = tmp_path / "sheet.csv"
    code, out, _ = run("predict", "plankton", queries, "--out", out_csv)
    assert code == 1  # the text file failed, alone
    assert "predicted 3, skipped 0" in out and "notes.txt" in out
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert list(rows[0])[:3] == ["path", "label", "score"]
    assert {r["path"].rsplit("/", 1)[-1]: r["label"] for r in rows} == \
        {"circles.jpg": "circles", "squares.jpg": "squares", "stripes.jpg": "stripes"}
    code, out, _ = run("predict", "plankton", queries)
    assert "predicted 0, skipped 3" in out


def test_predict_bad_input_is_one_line(run, loaded, tmp_path):
    code, _, err = run("predict", "plankton", tmp_path / "missing")
    assert code == 1 and err.count("\n") == 1 and "not a folder" in err
    (tmp_path / "empty.csv").write_text("path\n")
    code, _, err = run("predict", "plankton", "--csv", tmp_path / "empty.csv")
    assert code == 1 and "no paths" in err


def test_predict_with_no_exemplars_says_so_before_starting(run, cli_env, image_folder):
    from vss_core.config.projects import load_projects
    from vss_core.redis.exemplars import connect_store

    connect_store(load_projects().get("plankton")).client.flushall()
    code, _, err = run("predict", "plankton", image_folder)
    assert code == 1 and "is empty: load labeled exemplars" in err and err.count("\n") == 1


# -- the `vss` command, `make test`, CI and the Docker image --------------------------------

REPO = Path(__file__).resolve().parent.parent


def test_the_vss_command_is_installed_and_exits_with_the_command_s_code(cli_env, tmp_path):
    _, env = cli_env
    vss = Path(sys.executable).parent / "vss"
    assert vss.is_file(), f"{vss} is missing: `make test` installs it (pip install -e .)"
    done = subprocess.run([str(vss), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: vss") and "projects" in done.stdout
    done = subprocess.run([str(vss), "stats", "nope"], cwd=tmp_path, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr.splitlines()) == (1, ["error: no project named 'nope' (known: plankton)"])


def _make(*args: str, user: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*user, "make", "-f", str(REPO / "Makefile"), "-C", str(REPO), *args],
                          capture_output=True, text=True, timeout=60)


def test_make_test_installs_chromium_first_when_it_is_missing():
    missing = _make("-n", "test", "CHROMIUM=/nonexistent/chromium").stdout
    assert "apt-get install -y -qq chromium" in missing
    assert missing.index("apt-get install") < missing.index("-m pytest")
    present = _make("-n", "test", f"CHROMIUM={sys.executable}").stdout
    assert "apt-get" not in present and "-m pytest" in present


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_make_test_without_root_says_how_to_install_chromium():
    done = _make("/nonexistent/chromium", "CHROMIUM=/nonexistent/chromium",
                 user=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
    assert done.returncode != 0 and "apt-get" not in done.stdout
    assert "sudo apt-get install chromium" in done.stderr and "/nonexistent/chromium" in done.stderr


def test_ci_runs_every_test_with_ci_true():
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert "export CI=true" in lines and lines.index("export CI=true") < lines.index("make test")


def _local_imports(source: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {f"{n}.py" if (REPO / f"{n}.py").is_file() else n for n in names
            if (REPO / n).is_dir() or (REPO / f"{n}.py").is_file()}


def test_the_docker_image_holds_everything_the_app_the_api_and_vss_import():
    copied = set()
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied |= {word.rstrip("/") for word in line.split()[1:-1]}
    sources = [REPO / "app.py", REPO / "api.py"]
    for folder in ("pages", "ui", "vss_core"):
        sources += sorted((REPO / folder).glob("*.py"))
    needed = {"app.py", "api.py", "pyproject.toml", "pages", "config", ".streamlit"}
    for source in sources:
        needed |= _local_imports(source)
    assert needed <= copied, f"the Dockerfile does not copy {sorted(needed - copied)}"
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert not needed & ignored
