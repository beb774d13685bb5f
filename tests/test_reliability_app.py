"""What the sidebar tells a person about an unreachable config_url, and who the annotator is
when Streamlit's sign-in is configured."""

from __future__ import annotations

import pytest

from vss_core.config import remote as remote_config

from .test_app import open_app, texts


@pytest.fixture
def kept_copy_project(app_env, tmp_path, monkeypatch):
    """Project ``kept`` whose config_url is down, with a kept copy of its last good answer."""
    from ui import resources
    from vss_core.redis.server import embedded_server

    from .fixtures_app import free_port

    config = tmp_path / "config"
    config.mkdir()
    url = f"http://127.0.0.1:{free_port()}/kept.yml"
    (config / "kept.yaml").write_text(
        f"config_url: {url}\nvss:\n  project: kept\n  model: not-this-model\n  device: cpu\n")
    cached = remote_config._cache_path(url, app_env.data)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(f"vss:\n  model: {app_env.model}\n")
    monkeypatch.setenv("CONFIG_PATH", str(config))
    resources.reload_projects()
    yield
    resources.reload_projects()
    cached.unlink()
    server = embedded_server(app_env.data / "kept")
    if server.running:
        server.stop()


def test_sidebar_says_the_project_runs_on_the_kept_config_copy(kept_copy_project, app_env):
    at = open_app("kept")
    side = texts(at, at.sidebar)
    assert "using the copy kept from" in side and "kept.yml" in side
    assert str(app_env.model) in side  # the kept copy's model is the one in use


def signed_in_app():
    from streamlit.testing.v1 import AppTest

    from .test_app import APP

    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x",
                          "client_id": "id", "client_secret": "secret",
                          "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
    at.query_params["project"] = "alpha"
    at.query_params["annotator"] = "someone-typed-this"
    at.run()
    assert not at.exception, at.exception
    return at


def test_with_sign_in_configured_the_annotator_is_not_a_free_text_box(app_env):
    at = signed_in_app()
    assert not [w for w in at.sidebar.text_input if w.key == "annotator"]
    assert [b for b in at.sidebar.button if b.key == "sign_in"]
    assert at.session_state["annotator"] == ""  # a name from the URL is not taken as the user


def test_signed_in_user_is_the_annotator(app_env, monkeypatch):
    import streamlit

    class User(dict):
        is_logged_in = True

    monkeypatch.setattr(streamlit, "user", User(name="Ada Lovelace", email="ada@example.org"))
    at = signed_in_app()
    assert at.session_state["annotator"] == "Ada Lovelace"
    assert "Ada Lovelace (signed in)" in texts(at, at.sidebar)
    assert [b for b in at.sidebar.button if b.key == "sign_out"]
