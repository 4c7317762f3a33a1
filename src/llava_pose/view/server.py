"""The local server of `llava-pose view`: the built site, and the images its pages name.

Stdlib only (`ThreadingHTTPServer`), GET and HEAD. What it will send, and nothing else:

* a file of the site folder, by a URL path that stays inside it: the raw path may not hold an
  encoded slash or backslash (``%2f``, ``%5c``) or a NUL, no segment may be ``.`` or ``..``,
  and the file must resolve (symlinks followed) inside the real site folder;
* ``/img/<key>``: an image the data names, and only those (`site.served_src` lists them, each
  already checked by `site.image_file`), resolved again when asked for.

It binds 127.0.0.1 unless told otherwise, answers only requests whose Host header names the
address it serves (a web page cannot reach it through DNS rebinding; bound to every address
with ``--host 0.0.0.0``, any name is answered), and sends a Content-Security-Policy that lets
the page run only its own script.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import posixpath
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("llava_pose")

IMAGE_PREFIX = "/img/"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}
_LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


def safe_parts(raw_path: str) -> list[str] | None:
    """The decoded segments of a request path, or None when it could name something outside
    the folder it is joined to: encoded slashes or backslashes, NUL, ``.``/``..`` segments,
    backslashes, empty segments inside. Pure."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    lowered = path.lower()
    if "%2f" in lowered or "%5c" in lowered or "%00" in lowered or "\\" in path:
        return None
    decoded = urllib.parse.unquote(path, errors="strict") if "%" in path else path
    if "\0" in decoded or "\\" in decoded or not decoded.startswith("/"):
        return None
    parts = decoded[1:].split("/")
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if any(p in ("", ".", "..") for p in parts):
        return None
    return parts


def contained(root: Path, parts: list[str]) -> Path | None:
    """``root/parts`` when it is a file resolving inside the real `root`; else None."""
    path = root.joinpath(*parts) if parts else root
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real.is_dir():
        real = real / "index.html"
        if not real.is_file():
            return None
    return real if real.is_file() and real.is_relative_to(root.resolve()) else None


class ViewServer(ThreadingHTTPServer):
    """Serves one built site and the images it names."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        site: Path,
        image_root: Path | None = None,
        images: frozenset[str] = frozenset(),
        host: str = "127.0.0.1",
        port: int = 8765,
    ) -> None:
        self.site = site.resolve()
        self.image_root = image_root
        self.images = images
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

    def hosts(self) -> set[str] | None:
        """Host header values this server answers: its address, and localhost names on
        loopback; None (any) when it listens on every address, which the user asked for to
        reach it from other machines by whatever name they use."""
        host, port = str(self.server_address[0]), self.server_address[1]
        if host in ("0.0.0.0", "::"):
            return None
        names = {host, f"[{host}]"}
        if host in ("127.0.0.1", "::1"):
            names |= set(_LOCAL_NAMES)
        return {f"{n}:{port}" for n in names} | names

    def resolve(self, raw_path: str) -> Path | None:
        """The file a request path names, or None (never outside the given folders)."""
        parts = safe_parts(raw_path)
        if parts is None:
            return None
        if parts[:1] == [IMAGE_PREFIX.strip("/")]:
            key = "/".join(parts[1:])
            if key not in self.images or self.image_root is None:
                return None
            from .site import image_file

            return image_file(self.image_root, key)
        return contained(self.site, parts)


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "llava-pose-view"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("view: " + format, *args)

    def _refuse(self, status: HTTPStatus) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(head=False)

    def do_HEAD(self) -> None:
        self._send(head=True)

    def _send(self, head: bool) -> None:
        host = (self.headers.get("Host") or "").lower()
        hosts = self.server.hosts()
        if hosts is not None and host not in hosts:
            return self._refuse(HTTPStatus.FORBIDDEN)
        try:
            path = self.server.resolve(self.path)
        except UnicodeDecodeError:
            path = None
        if path is None:
            return self._refuse(HTTPStatus.NOT_FOUND)
        ctype = TYPES.get(path.suffix.lower()) or (
            mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        try:
            f = path.open("rb")
        except OSError:
            return self._refuse(HTTPStatus.NOT_FOUND)
        with f:
            size = posixpath.getsize(str(path))
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if not head:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    shutil.copyfileobj(f, self.wfile)


@contextlib.contextmanager
def serving(
    site: Path,
    image_root: Path | None = None,
    images: frozenset[str] = frozenset(),
    host: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[ViewServer]:
    """A server in a background thread (tests and benches), shut down on exit."""
    server = ViewServer(site, image_root, images, host, port)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="llava-pose-view", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
