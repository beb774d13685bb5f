import http.server
import threading
from pathlib import Path

import pytest

from vss_core.config.projects import load_project_file, load_projects, settings
from vss_core.errors import ConfigError

FASTAPI_VSS_FILE = """\
# Config file for 901103-biodiversity project
redis:
  host: "doris.shore.mbari.org"
  port: 6381

vss:
  threshold: 0.9
  model: "google/vit-base-patch16-224"
  project: "901103-biodiversity"
  output_path: "/tmp/out"

tator:
  project: "901103-biodiversity"
  host: "mantis.shore.mbari.org"
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    monkeypatch.setenv("CONFIG_PATH", str(config_dir))
    monkeypatch.setenv("VSS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("REDIS_PASSWD", raising=False)
    monkeypatch.delenv("BATCH_SIZE", raising=False)
    return config_dir


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def yaml_server():
    """Serve files from a dict on a loopback HTTP server."""
    pages: dict[str, tuple[int, str]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = pages.get(self.path, (404, "not found"))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield base, pages
    server.shutdown()


def test_fastapi_vss_file_loads_unchanged(env, monkeypatch):
    monkeypatch.setenv("REDIS_PASSWD", "s3cret")
    write(env, "config_bio.yml", FASTAPI_VSS_FILE)
    result = load_projects()
    assert result.errors == []
    project = result.get("901103-biodiversity")
    assert project.model == "google/vit-base-patch16-224"
    assert project.redis.host == "doris.shore.mbari.org"
    assert project.redis.port == 6381
    assert project.redis.password == "s3cret"
    assert project.redis.index == "index" and project.redis.prefix == "doc:"
    assert project.output_path == "/tmp/out"
    assert project.threshold == 0.9
    assert project.index_algorithm == "FLAT"
    assert "s3cret" not in repr(project) and "s3cret" not in project.redis.describe()


def test_no_redis_section_means_embedded_under_data_dir(env, tmp_path):
    write(env, "a.yaml", "vss:\n  project: alpha\n  model: /models/vit\n")
    project = load_projects().get("alpha")
    assert project.redis.embedded
    assert project.data_dir == tmp_path / "data" / "alpha"
    assert project.redis.socket_path == tmp_path / "data" / "alpha" / "redis.sock"
    assert "embedded" in project.redis.describe()


def test_explicit_embedded_host_and_new_keys(env, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    write(env, "b.yml", f"""
redis: {{host: embedded, index: myidx, prefix: "v:"}}
vss:
  project: beta
  model: facebook/dinov2-small
  index_algorithm: hnsw
  hnsw: {{m: 32, ef_runtime: 50}}
  device: cuda:1
  data_roots: [{images}, ../images]
""")
    project = load_projects().get("beta")
    assert project.redis.embedded
    assert (project.redis.index, project.redis.prefix) == ("myidx", "v:")
    assert project.index_algorithm == "HNSW"
    assert project.hnsw == {"M": 32, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 50}
    assert project.device == "cuda:1"
    assert project.data_roots == (images.resolve(), images.resolve())


def test_subfolders_and_both_extensions_are_read(env):
    (env / "more").mkdir()
    write(env, "a.yaml", "vss: {project: a, model: m}\n")
    write(env / "more", "b.yml", "vss: {project: b, model: m}\n")
    assert sorted(load_projects().projects) == ["a", "b"]


@pytest.mark.parametrize("text, key, words", [
    ("vss: [unclosed", None, "not valid YAML"),
    ("- just\n- a list\n", None, "mapping"),
    ("redis: {host: h}\n", "vss", "required"),
    ("vss: {model: m}\n", "vss.project", "required"),
    ("vss: {project: p}\n", "vss.model", "required"),
    ("vss: {project: 12, model: m}\n", "vss.project", "must be str"),
    ("vss: {project: p, model: m}\nredis: {host: h, port: '6379'}\n", "redis.port", "must be int"),
    ("vss: {project: p, model: m}\nredis: {host: h, port: 70000}\n", "redis.port", "between"),
    ("vss: {project: p, model: m}\nredis: [1]\n", "redis", "mapping"),
    ("vss: {project: p, model: m, index_algorithm: IVF}\n", "vss.index_algorithm", "FLAT or HNSW"),
    ("vss: {project: p, model: m, hnsw: {m: -1}}\n", "vss.hnsw.m", "positive"),
    ("vss: {project: p, model: m, device: tpu}\n", "vss.device", "cuda:N"),
    ("vss: {project: p, model: m, data_roots: [3]}\n", "vss.data_roots[0]", "folder"),
    ("vss: {project: ../evil, model: m}\n", "vss.project", "usable name"),
])
def test_bad_file_names_file_and_key_and_others_still_load(env, text, key, words):
    write(env, "good.yaml", "vss: {project: good, model: m}\n")
    bad = write(env, "bad.yaml", text)
    result = load_projects()
    assert list(result.projects) == ["good"]
    (error,) = result.errors
    assert str(bad) in str(error) and words in str(error)
    assert error.key == key
    if key:
        assert f"'{key}'" in str(error)


def test_duplicate_project_name_is_an_error_for_the_second_file(env):
    first = write(env, "a.yaml", "vss: {project: same, model: m1}\n")
    second = write(env, "b.yaml", "vss: {project: same, model: m2}\n")
    result = load_projects()
    assert result.get("same").model == "m1"
    (error,) = result.errors
    assert str(second) in str(error) and str(first) in str(error) and "duplicate" in str(error)


def test_missing_config_folder_is_reported(tmp_path):
    result = load_projects(tmp_path / "nowhere")
    assert result.projects == {} and "does not exist" in str(result.errors[0])


def test_unknown_project_lists_known_ones(env):
    write(env, "a.yaml", "vss: {project: a, model: m}\n")
    with pytest.raises(ConfigError, match="no project named 'zz'.*known: a"):
        load_projects().get("zz")


def test_config_url_deep_merges_and_remote_wins(env, yaml_server):
    base, pages = yaml_server
    pages["/remote.yml"] = (200, "redis:\n  port: 7000\nvss:\n  model: remote/model\n  device: cpu\n")
    write(env, "a.yaml", f"config_url: {base}/remote.yml\nredis: {{host: h, port: 6379}}\n"
                         "vss: {project: merged, model: local/model, threshold: 0.5}\n")
    project = load_projects().get("merged")
    assert project.model == "remote/model"
    assert (project.redis.host, project.redis.port) == ("h", 7000)
    assert project.threshold == 0.5 and project.device == "cpu"


@pytest.mark.parametrize("path, status, body, words", [
    ("/missing.yml", 404, "", "cannot fetch"),
    ("/bad.yml", 200, "vss: [oops", "not valid YAML"),
    ("/list.yml", 200, "- a\n- b\n", "mapping"),
])
def test_bad_config_url_fails_alone(env, yaml_server, path, status, body, words):
    base, pages = yaml_server
    if status == 200:
        pages[path] = (status, body)
    write(env, "ok.yaml", "vss: {project: ok, model: m}\n")
    bad = write(env, "remote.yaml", f"config_url: {base}{path}\nvss: {{project: r, model: m}}\n")
    result = load_projects()
    assert list(result.projects) == ["ok"]
    (error,) = result.errors
    assert str(bad) in str(error) and "'config_url'" in str(error) and words in str(error)


def test_unreachable_config_url(env):
    bad = write(env, "r.yaml", "config_url: http://127.0.0.1:9/x.yml\nvss: {project: r, model: m}\n")
    with pytest.raises(ConfigError, match="cannot fetch") as info:
        load_project_file(bad)
    assert info.value.key == "config_url"


def test_non_http_config_url_is_refused(env):
    bad = write(env, "r.yaml", "config_url: file:///etc/passwd\nvss: {project: r, model: m}\n")
    with pytest.raises(ConfigError, match="not an http"):
        load_project_file(bad)


def test_environment_overrides(env, tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_SIZE", "8")
    monkeypatch.setenv("VSS_DATA_DIR", str(tmp_path / "elsewhere"))
    write(env, "a.yaml", "vss: {project: a, model: m}\n")
    project = load_projects().get("a")
    assert project.batch_size == 8
    assert project.data_dir == tmp_path / "elsewhere" / "a"


def test_bad_batch_size_names_the_variable(monkeypatch):
    monkeypatch.setenv("BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match="BATCH_SIZE.*positive integer"):
        settings()


def test_example_project_in_repo_is_valid(monkeypatch):
    monkeypatch.delenv("CONFIG_PATH", raising=False)
    result = load_projects()
    assert result.errors == []
    assert any(p.model == "google/vit-base-patch16-224" and p.redis.embedded for p in result.projects.values())


def test_relative_model_path_resolves_against_the_file(tmp_path):
    from vss_core.config.projects import load_projects

    (tmp_path / "cfg" / "models" / "mine").mkdir(parents=True)
    (tmp_path / "cfg" / "a.yaml").write_text("vss: {project: a, model: models/mine}\n")
    (tmp_path / "cfg" / "b.yaml").write_text("vss: {project: b, model: ./models/missing}\n")
    (tmp_path / "cfg" / "c.yaml").write_text("vss: {project: c, model: google/vit-base-patch16-224, threshold: 0.9}\n")
    (tmp_path / "cfg" / "d.yaml").write_text("vss: {project: d, model: m, promote: maybe}\n")
    result = load_projects(tmp_path / "cfg")
    assert result.projects["a"].model == str((tmp_path / "cfg" / "models" / "mine").resolve())
    assert result.projects["b"].model == str((tmp_path / "cfg" / "models" / "missing").resolve())
    assert result.projects["c"].model == "google/vit-base-patch16-224"
    assert result.projects["c"].threshold == 0.9 and result.projects["c"].promote == {"single", "page", "group"}
    assert any("vss.promote" in str(e) for e in result.errors)


@pytest.mark.parametrize("value,policy", [("true", {"single", "page", "group"}), ("false", set()),
                                          ("[single, Bulk]", {"single", "bulk"}), ("[]", set())])
def test_promotion_policy_says_which_decisions_make_exemplars(tmp_path, value, policy):
    from vss_core.config.keys import describe_policy
    from vss_core.config.projects import load_projects

    (tmp_path / "p.yaml").write_text(f"vss: {{project: p, model: m, promote: {value}}}\n")
    project = load_projects(tmp_path).get("p")
    assert project.promote == policy
    assert ("bulk decisions stay in the pool only" in describe_policy(project.promote)) == ("bulk" not in policy
                                                                                           and bool(policy))


def test_a_promotion_policy_naming_an_unknown_way_names_the_key(tmp_path):
    from vss_core.config.projects import load_projects

    (tmp_path / "p.yaml").write_text("vss: {project: p, model: m, promote: [single, everything]}\n")
    result = load_projects(tmp_path)
    assert "p" not in result.projects and "vss.promote" in str(result.errors[0]) and "bulk" in str(result.errors[0])


def test_a_missing_relative_model_names_the_absolute_path(tmp_path):
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.errors import ModelLoadError

    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "a.yaml").write_text("vss: {project: a, model: ./models/missing}\n")
    project = load_projects(tmp_path / "cfg").projects["a"]
    with pytest.raises(ModelLoadError, match=str(tmp_path / "cfg" / "models" / "missing")):
        Embedder(project.model, device="cpu")
