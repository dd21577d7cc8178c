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
    assert services["web-2"] == services["web"]  # the second API replica, routed to by scan
    assert services["web-dicomweb"]["environment"]["CURATECT_WEB_POOL"] == "dicomweb"
    proxy = services["proxy"]
    assert proxy["environment"]["CURATECT_DICOMWEB_UPSTREAM"] == "web-dicomweb:8000"
    assert (
        proxy["environment"]["CURATECT_API_UPSTREAM"],
        proxy["environment"]["CURATECT_API_UPSTREAM_2"],
    ) == (
        "web:8000",
        "web-2:8000",
    )
    assert {"web", "web-2", "web-dicomweb"} <= set(proxy["depends_on"])
    assert any(v.startswith("./deploy/nginx/curatect.conf.template:") for v in proxy["volumes"])
    assert "ports" not in services["web"]  # only the router is published


def _nginx() -> str:
    # `make test` installs Debian's nginx-light (the `router` target): a missing router fails here.
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    assert nginx, "nginx is not installed: make router (tools/apt-install.sh nginx-light)"
    return nginx


def _router_site(*, api: tuple[str, str], dicomweb: str, listen: str) -> str:
    """The router template with its variables filled in, as nginx's image does with envsubst."""
    site = TEMPLATE.read_text()
    for name, value in (
        ("CURATECT_API_UPSTREAM", api[0]),
        ("CURATECT_API_UPSTREAM_2", api[1]),
        ("CURATECT_DICOMWEB_UPSTREAM", dicomweb),
        ("CURATECT_ROUTER_LISTEN", listen),
    ):
        site = site.replace("${" + name + "}", value)
    return site


def test_the_router_template_is_a_valid_nginx_config(tmp_path):
    nginx = _nginx()
    site = _router_site(api=("127.0.0.1:1", "127.0.0.1:4"), dicomweb="127.0.0.1:2", listen="127.0.0.1:3")
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


def _upstream(name: str):
    """A loopback HTTP server that answers every GET with its own name."""
    import http.server
    import threading

    class Named(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Named)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_router_sends_every_request_about_a_scan_to_one_api_replica(tmp_path):
    # The replica's caches hold the scan's volume and head labels: a grow, a save and the labels
    # of one scan must meet there; requests about no scan may go to either.
    import os
    import time
    import urllib.request

    nginx = _nginx()
    servers = {name: _upstream(name) for name in ("api-1", "api-2", "dicomweb")}
    port = _free_port()
    address = {name: f"127.0.0.1:{server.server_port}" for name, server in servers.items()}
    site = _router_site(
        api=(address["api-1"], address["api-2"]), dicomweb=address["dicomweb"], listen=f"127.0.0.1:{port}"
    )
    (tmp_path / "site.conf").write_text(site)
    temps = "".join(
        f"  {sub}_temp_path {tmp_path / sub};\n"
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\npid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{\n  access_log off;\n{temps}"
        + f"  include {tmp_path}/site.conf;\n}}\n"
    )
    router = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf")]
    )

    def served_by(path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.read().decode()

    try:
        for _ in range(100):
            try:
                served_by("/login/")
                break
            except OSError:
                time.sleep(0.05)
        for scan in range(1, 21):
            where = {
                served_by(path)
                for path in (
                    f"/api/campaigns/3/scans/{scan}/region-grow/",
                    f"/api/campaigns/3/scans/{scan}/annotation/revisions/",
                    f"/api/campaigns/3/scans/{scan}/annotation/",
                    f"/api/scans/{scan}/",
                )
            }
            assert len(where) == 1 and where <= {"api-1", "api-2"}, (scan, where)
        by_scan = {served_by(f"/api/campaigns/3/scans/{scan}/annotation/") for scan in range(1, 21)}
        assert by_scan == {"api-1", "api-2"}  # twenty scans are spread over both
        assert {served_by("/api/worklist/") for _ in range(10)} == {"api-1", "api-2"}
        assert served_by("/dicomweb/studies/1.2.3/series/4.5.6/metadata") == "dicomweb"
    finally:
        router.terminate()
        router.wait(timeout=10)
        for server in servers.values():
            server.shutdown()
