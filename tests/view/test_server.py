"""The view server over real HTTP on 127.0.0.1: it sends the site and the images the data
names, and nothing else, whatever the request path says; and `llava-pose view` itself serves,
prints its URL and stops cleanly."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.view.helpers import site

from llava_pose.view.server import ViewServer, safe_parts, serving


def get(
    server: ViewServer, path: str, host: str | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """One request with `path` sent exactly as written (no client-side normalization)."""
    port = server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


@pytest.fixture
def image_root(tmp_path: Path, coco_mini: Path) -> Path:
    """A COCO root whose val2017 is a link to COCO-MINI's (a user's folder on another disk),
    plus a file link out of the folder and a secret beside the root."""
    root = tmp_path / "coco"
    root.mkdir()
    (root / "annotations").symlink_to(coco_mini / "annotations")
    (root / "val2017").symlink_to(coco_mini / "val2017")
    (tmp_path / "secret.txt").write_text("do not serve")
    return root


@pytest.fixture
def server(rules_out: Path, tmp_path: Path, image_root: Path) -> Iterator[ViewServer]:
    out = tmp_path / "site"
    _, root, served = site(rules_out, out, image_root=str(image_root))
    assert root == image_root
    (out / "data" / "leak.js").symlink_to(tmp_path / "secret.txt")  # a link out of the site
    with serving(out, root, frozenset(served)) as s:
        yield s


def test_serves_the_site_with_a_policy_that_runs_only_its_own_script(server: ViewServer) -> None:
    status, headers, body = get(server, "/")
    assert status == 200 and b'<script src="view.js">' in body
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = get(server, "/data/manifest.js")
    assert status == 200 and body.startswith(b'LPV.put("manifest",')
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    status, headers, body = get(server, "/index.html", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_serves_the_images_the_data_names(server: ViewServer, coco_mini: Path) -> None:
    status, headers, body = get(server, "/img/val2017/000000034417.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert body == (coco_mini / "val2017" / "000000034417.jpg").read_bytes()
    assert get(server, "/img/val2017%2F000000034417.jpg")[0] == 404  # an encoded slash
    assert get(server, "/img/val2017/./000000034417.jpg")[0] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/data/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/data%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/data/leak.js",  # a symlink out of the site
        "/data/manifest.js%00.png",
        "/img/../../secret.txt",
        "/img/%2e%2e/%2e%2e/secret.txt",
        "/img/annotations/captions_val2017.json",  # under the root, but no page names it
        "/img/val2017/000000000139.jpg",  # an image the data does not name
        "//etc/passwd",
        "/img//etc/passwd",
        "/%ff%fe",
    ],
)
def test_nothing_outside_the_given_folders_or_the_data(server: ViewServer, path: str) -> None:
    status, _, body = get(server, path)
    assert status == 404 and b"secret" not in body and b"root:" not in body


def test_only_requests_for_this_host_are_answered(server: ViewServer) -> None:
    """A web page that rebinds its name to 127.0.0.1 still sends its own Host: refused."""
    port = server.server_address[1]
    assert get(server, "/", host="evil.example")[0] == 403
    assert get(server, "/", host=f"evil.example:{port}")[0] == 403
    assert get(server, "/", host=f"localhost:{port}")[0] == 200
    assert get(server, "/", method="POST")[0] == 501


def test_a_file_link_out_of_an_image_folder_is_refused(
    tmp_path: Path, rules_out: Path, coco_mini: Path
) -> None:
    """val2017/<image> itself a link to a file elsewhere: not served, and the page shows no
    image for it; the folder link of the fixture above is served."""
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").symlink_to(coco_mini / "annotations")
    for image in (coco_mini / "val2017").iterdir():
        shutil.copy(image, root / "val2017" / image.name)
    (root / "val2017" / "000000034417.jpg").unlink()
    (root / "val2017" / "000000034417.jpg").symlink_to(coco_mini / "val2017" / "000000034417.jpg")
    data, found, served = site(rules_out, tmp_path / "site", image_root=str(root))
    assert data.pages["val2017/000000034417.jpg"]["src"] is None
    assert data.pages["val2017/000000109313.jpg"]["src"] == "img/val2017/000000109313.jpg"
    with serving(tmp_path / "site", found, frozenset(served)) as s:
        assert get(s, "/img/val2017/000000034417.jpg")[0] == 404
        assert get(s, "/img/val2017/000000109313.jpg")[0] == 200


def test_safe_parts() -> None:
    assert safe_parts("/data/rows/0.js?x=1") == ["data", "rows", "0.js"]
    assert safe_parts("/img/val2017/a%20b.jpg") == ["img", "val2017", "a b.jpg"]
    assert safe_parts("/") == []
    for bad in ("/a/../b", "/a/./b", "/a//b", "/a%2fb", "/a%5Cb", "/a\\b", "/a%00", "x"):
        assert safe_parts(bad) is None, bad


def serve_command(folder: Path, *extra: str) -> subprocess.Popen[str]:
    """`llava-pose view FOLDER --port 0` in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "llava_pose", "view", str(folder), "--port", "0", "-q", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def fetch(line: str, path: str) -> tuple[int, bytes]:
    """GET `path` from the server whose first line of output is `line`."""
    assert line.startswith("serving http://127.0.0.1:"), line
    assert line.rstrip().endswith("(Ctrl-C to stop)")
    port = int(line.split()[1].rsplit(":", 1)[1].strip("/"))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C, then what it printed."""
    try:
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_command_serves_prints_its_url_and_stops_on_ctrl_c(
    rules_out: Path, coco_mini: Path
) -> None:
    proc = serve_command(rules_out)
    try:
        assert proc.stdout is not None
        status, body = fetch(proc.stdout.readline(), "/img/val2017/000000034417.jpg")
        assert status == 200 and body == (coco_mini / "val2017" / "000000034417.jpg").read_bytes()
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0, err
    assert out.strip() == "stopped" and "Traceback" not in err


def test_an_export_is_served_as_it_is(
    rules_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Built once with --export, then served at once: nothing read again, thumbnails inside."""
    from tests.conftest import one_line_error
    from tests.view.conftest import cli

    out = tmp_path / "site"
    assert cli("view", rules_out, "--export", out) == 0
    capsys.readouterr()
    rc = cli("view", out, "--claims", "x.jsonl")
    one_line_error(capsys, rc, "--claims", "already a built site")
    proc = serve_command(out)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        status, body = fetch(line, "/thumbs/val2017/000000034417.jpg")
        assert status == 200
        assert body == (out / "thumbs" / "val2017" / "000000034417.jpg").read_bytes()
        assert fetch(line, "/data/manifest.js")[0] == 200
        assert fetch(line, "/img/val2017/000000034417.jpg")[0] == 404  # no image root here
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_listening_everywhere_answers_any_host_name(tmp_path: Path) -> None:
    """--host 0.0.0.0 is asked for to be reached from other machines, by any of their names."""
    (tmp_path / "index.html").write_text("<p>hi</p>")
    with serving(tmp_path, host="0.0.0.0") as s:
        assert s.hosts() is None
        assert get(s, "/", host="my-workstation.lan:8765")[0] == 200


# -- what the server refuses, and how it answers --------------------------------------------------


def test_a_folders_index_link_out_of_the_site_is_refused(rules_out: Path, tmp_path: Path) -> None:
    """`view SITE/` of an export whose index.html (and data/index.html) link outside: the
    index file appended to a folder's path is checked like any other, so /, /data/ and /data
    send nothing from outside."""
    from tests.view.conftest import cli

    out = tmp_path / "site"
    assert cli("view", rules_out, "--export", out) == 0
    (tmp_path / "outside.txt").write_text("outside the site")
    (tmp_path / "passwd").write_text("root:x:0:0:secret")
    (out / "index.html").unlink()
    (out / "index.html").symlink_to(tmp_path / "outside.txt")
    (out / "data" / "index.html").symlink_to(tmp_path / "passwd")
    proc = serve_command(out)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        for path in ("/", "/index.html", "/data/", "/data"):
            status, body = fetch(line, path)
            assert status == 404 and b"outside" not in body and b"root:" not in body, path
        assert fetch(line, "/data/manifest.js")[0] == 200
    finally:
        stop(proc)
    assert proc.returncode == 0


@pytest.fixture
def copied_root(tmp_path: Path, coco_mini: Path) -> Path:
    """A COCO root whose val2017 holds copies of COCO-MINI's images (files the test may
    replace)."""
    root = tmp_path / "copied"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").symlink_to(coco_mini / "annotations")
    for image in (coco_mini / "val2017").iterdir():
        shutil.copy(image, root / "val2017" / image.name)
    return root


def test_only_real_images_are_served_typed_by_their_content(
    rules_out: Path, tmp_path: Path, copied_root: Path
) -> None:
    """A record's image that is text named .jpg, or a JPEG named .txt, is not sent; a PNG
    named .jpg is sent as the PNG it is."""
    from PIL import Image

    data_dir = tmp_path / "data"
    shutil.copytree(rules_out, data_dir)
    records = json.loads((data_dir / "llava_pose_all.json").read_text())
    records[-1]["image"] = "val2017/notes.txt"
    (data_dir / "llava_pose_all.json").write_text(json.dumps(records))
    val = copied_root / "val2017"
    shutil.copy(val / "000000011813.jpg", val / "notes.txt")  # a real JPEG, not an image name
    (val / "000000034417.jpg").write_text("secret: not an image at all")
    with Image.open(val / "000000109313.jpg") as im:
        im.save(val / "000000109313.jpg", format="PNG")
    _, root, served = site(data_dir, tmp_path / "site", image_root=str(copied_root))
    with serving(tmp_path / "site", root, frozenset(served)) as s:
        status, _, body = get(s, "/img/val2017/000000034417.jpg")
        assert status == 404 and b"secret" not in body
        assert get(s, "/img/val2017/notes.txt")[0] == 404
        status, headers, body = get(s, "/img/val2017/000000109313.jpg")
        assert status == 200 and headers["content-type"] == "image/png"
        assert body.startswith(b"\x89PNG\r\n\x1a\n")
        status, headers, _ = get(s, "/img/val2017/000000311002.jpg")
        assert status == 200 and headers["content-type"] == "image/jpeg"


def test_idle_connections_are_closed_and_threads_stay_bounded(tmp_path: Path) -> None:
    """Sockets that never send a request hold at most `max_connections` threads, each for at
    most `idle_timeout` seconds; the server answers again once they are gone."""
    import socket
    import threading
    import time

    (tmp_path / "index.html").write_text("<p>hi</p>")
    before = threading.active_count()
    with serving(tmp_path, idle_timeout=0.5, max_connections=8) as s:
        port = s.server_address[1]
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(200)]
        try:
            time.sleep(0.2)
            peak = threading.active_count()
            assert peak - before <= 8 + 1, peak - before  # + the serve_forever thread
            for sock in idle:  # each is closed by the server: EOF (or a reset) within seconds
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1) == b""
        finally:
            for sock in idle:
                sock.close()
        assert get(s, "/")[0] == 200


def raw(server: ViewServer, request: bytes) -> tuple[int, dict[str, str]]:
    """Send `request` bytes as they are; the status and headers of the reply."""
    import socket

    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}


def test_every_response_carries_the_security_headers(server: ViewServer) -> None:
    """Pages, refusals, and the errors the standard library words (a bad request line, a
    method it does not take, a line too long) alike."""
    port = server.server_address[1]
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    replies = [
        raw(server, b"GET / HTTP/1.0\r\n" + host + b"\r\n"),
        raw(server, b"GET /nothing-here HTTP/1.0\r\n" + host + b"\r\n"),
        raw(server, b"GET / HTTP/1.0\r\nHost: evil.example\r\n\r\n"),
        raw(server, b"POST / HTTP/1.0\r\n" + host + b"Content-Length: 0\r\n\r\n"),
        raw(server, b"BREW /pot\r\n\r\n"),
        raw(server, b"GET /\r\n" + host + b"\r\n"),  # HTTP/0.9: no headers unless refused
        raw(server, b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n"),
    ]
    assert [status for status, _ in replies] == [200, 404, 403, 501, 400, 400, 414]
    for status, headers in replies:
        assert headers.get("content-security-policy", "").startswith("default-src 'none'"), status
        assert headers.get("x-content-type-options") == "nosniff", status
        assert headers.get("referrer-policy") == "no-referrer", status
        if status != 200:
            assert headers["content-type"] == "text/plain; charset=utf-8", status


def test_listening_beyond_this_machine_warns_once(rules_out: Path) -> None:
    proc = serve_command(rules_out, "--host", "0.0.0.0")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving http://0.0.0.0:"), line
    finally:
        _, err = stop(proc)
    assert proc.returncode == 0, err
    warnings = [x for x in err.splitlines() if x.strip()]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0] and "network" in warnings[0], err


def test_an_ipv6_host_is_served(rules_out: Path) -> None:
    proc = serve_command(rules_out, "--host", "::1")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving http://[::1]:"), line
        port = int(line.split()[1].rsplit(":", 1)[1].strip("/"))
        conn = http.client.HTTPConnection("::1", port, timeout=10)
        conn.request("GET", "/data/manifest.js")
        response = conn.getresponse()
        assert response.status == 200 and response.read().startswith(b'LPV.put("manifest",')
        conn.close()
    finally:
        _, err = stop(proc)
    assert proc.returncode == 0 and err.strip() == "", err


def test_a_host_it_cannot_listen_on_is_a_host_error(
    rules_out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this machine: the line names --host, not the
    port."""
    from tests.conftest import one_line_error
    from tests.view.conftest import cli

    rc = cli("view", rules_out, "--host", "192.0.2.1", "--port", "0")
    line = one_line_error(capsys, rc, "--host", "192.0.2.1")
    assert "--port" not in line
