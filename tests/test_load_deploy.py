"""Issue #16 §1: the web tier is two gunicorn pools behind a router, so frames never hold up
region-growing clicks and saves; docker-compose.yml and bench/load.py run the same files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
TEMPLATE = ROOT / "deploy" / "nginx" / "curatect.conf.template"


def gunicorn_settings(monkeypatch, **env: str) -> dict:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    namespace: dict = {}
    exec(compile(GUNICORN_CONF.read_text(), str(GUNICORN_CONF), "exec"), namespace)
    return namespace


def test_the_api_pool_is_one_process_with_threads_so_its_caches_stay_warm(monkeypatch):
    conf = gunicorn_settings(monkeypatch, CURATECT_WEB_POOL="api")

    assert (conf["workers"], conf["worker_class"], conf["threads"]) == (1, "gthread", 8)
    assert conf["keepalive"] > 60  # longer than the router's idle upstream connections


def test_an_unknown_pool_stops_gunicorn_with_the_names_it_knows(monkeypatch):
    with pytest.raises(SystemExit, match=r"api.*dicomweb"):
        gunicorn_settings(monkeypatch, CURATECT_WEB_POOL="frames")


def test_compose_routes_dicomweb_to_its_own_pool():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]

    assert services["web"]["environment"]["CURATECT_WEB_POOL"] == "api"
    assert services["web-dicomweb"]["environment"]["CURATECT_WEB_POOL"] == "dicomweb"
    proxy = services["proxy"]
    assert proxy["environment"]["CURATECT_DICOMWEB_UPSTREAM"] == "web-dicomweb:8000"
    assert any(v.startswith("./deploy/nginx/curatect.conf.template:") for v in proxy["volumes"])
    assert "ports" not in services["web"]  # only the router is published


def test_the_router_template_is_a_valid_nginx_config(tmp_path):
    # `make test` installs Debian's nginx-light (the `router` target): a missing router fails here.
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    assert nginx, "nginx is not installed: make router (tools/apt-install.sh nginx-light)"
    site = TEMPLATE.read_text()
    for name, value in (
        ("CURATECT_API_UPSTREAM", "127.0.0.1:1"),
        ("CURATECT_DICOMWEB_UPSTREAM", "127.0.0.1:2"),
        ("CURATECT_ROUTER_LISTEN", "127.0.0.1:3"),
    ):
        site = site.replace("${" + name + "}", value)
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{\n  include {tmp_path}/site.conf;\n}}\n"
    )

    done = subprocess.run(
        [
            nginx,
            "-t",
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
            "-c",
            str(tmp_path / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stderr
    assert "location /dicomweb/" in site and "proxy_pass http://curatect_dicomweb" in site
