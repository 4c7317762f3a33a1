"""The local server of `llava-pose view`: the built site, and the images its pages name.

Stdlib only (`ThreadingHTTPServer`), GET and HEAD. What it will send, and nothing else:

* a file of the site folder, by a URL path that stays inside it: the raw path may not hold an
  encoded slash or backslash (``%2f``, ``%5c``) or a NUL, no segment may be ``.`` or ``..``,
  and the file actually sent (a folder's ``index.html`` included) must resolve (symlinks
  followed) inside the real site folder;
* ``/img/<key>``: an image the data names, and only those (`site.served_src` lists them, each
  already checked by `site.image_file`), resolved again when asked for; its name must be an
  image's (`site.IMAGE_SUFFIXES`) and its first bytes too (`images.media_type`, which gives the type
  sent), so a record cannot make it send a text file.

It binds 127.0.0.1 unless told otherwise (IPv6 addresses too), answers only requests whose
Host header names the address it serves (a web page cannot reach it through DNS rebinding;
bound to every address with ``--host 0.0.0.0``, any name is answered), and every response,
the standard library's error pages included, carries a Content-Security-Policy that lets the
page run only its own script, ``nosniff`` and ``no-referrer``. A connection gets a thread for
at most `IDLE_TIMEOUT` seconds without progress, and at most `MAX_CONNECTIONS` at once: more
are closed at once, so idle sockets cannot pile up threads.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import mimetypes
import os
import shutil
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..images import media_type

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
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
IDLE_TIMEOUT = 15.0  # s a connection may wait for its request (or its reader) before it is closed
MAX_CONNECTIONS = 64  # connections served at once (a page opens a few); more are closed
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
    """The real file ``root/parts`` names (a folder's ``index.html``) when it resolves inside
    the real `root`; else None. The index file is resolved too: a link out of the site is
    refused wherever it sits on the way."""
    path = root.joinpath(*parts) if parts else root
    try:
        real = path.resolve(strict=True)
        if real.is_dir():
            real = (real / "index.html").resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real.is_file() and real.is_relative_to(root.resolve()) else None


def address_family(host: str) -> socket.AddressFamily:
    """IPv6 for an IPv6 address (or a name whose first address is one), else IPv4; a name
    that does not resolve raises `socket.gaierror`."""
    if not host:
        return socket.AF_INET
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        pass
    return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]


def is_loopback(host: str) -> bool:
    """Whether a bound address is this machine only."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class ViewServer(ThreadingHTTPServer):
    """Serves one built site and the images it names."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a full backlog stalls new connections for seconds (SYN retries)

    def __init__(
        self,
        site: Path,
        image_root: Path | None = None,
        images: frozenset[str] = frozenset(),
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.site = site.resolve()
        self.image_root = image_root
        self.images = images
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self.address_family = address_family(host)
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection while a slot is free; otherwise the connection is closed
        at once (a browser retries; a pile of idle sockets gets nothing)."""
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone or too slow (reset, timeout) is not news: logged at debug level,
        not a traceback on the console."""
        log.debug("view: connection from %s failed", client_address, exc_info=True)

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

    def resolve(self, raw_path: str) -> tuple[Path, bool] | None:
        """The file a request path names and whether it is an image of the data (sent only
        when its bytes say it is one), or None (never outside the given folders)."""
        parts = safe_parts(raw_path)
        if parts is None:
            return None
        if parts[:1] == [IMAGE_PREFIX.strip("/")]:
            key = "/".join(parts[1:])
            if key not in self.images or self.image_root is None:
                return None
            from .site import image_file

            path = image_file(self.image_root, key)
            return (path, True) if path is not None else None
        path = contained(self.site, parts)
        return (path, False) if path is not None else None


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "llava-pose-view"
    sys_version = ""
    # A request line without a version (HTTP/0.9) would get a reply without any header:
    # replies are HTTP/1.0 whatever was asked, and such requests are refused.
    default_request_version = "HTTP/1.0"
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # the socket's: a silent client is let go
        super().setup()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if len(self.raw_requestline.split()) < 3:
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 is not served")
            return False
        return True

    def end_headers(self) -> None:
        """Every response, the standard library's error pages included, carries the policy."""
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("view: " + format, *args)

    def _refuse(self, status: HTTPStatus) -> None:
        self.send_error(status)

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
            found = self.server.resolve(self.path)
        except UnicodeDecodeError:
            found = None
        if found is None:
            return self._refuse(HTTPStatus.NOT_FOUND)
        path, is_image = found
        try:
            f = path.open("rb")
        except OSError:
            return self._refuse(HTTPStatus.NOT_FOUND)
        with f:
            if is_image:
                ctype = media_type(f.read(16))
                if ctype is None:  # named .jpg, but not an image: never sent
                    return self._refuse(HTTPStatus.NOT_FOUND)
                f.seek(0)
            else:
                ctype = TYPES.get(path.suffix.lower()) or (
                    mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                )
            size = os.fstat(f.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if not head:
                with contextlib.suppress(ConnectionError, TimeoutError):
                    shutil.copyfileobj(f, self.wfile)


@contextlib.contextmanager
def serving(
    site: Path,
    image_root: Path | None = None,
    images: frozenset[str] = frozenset(),
    host: str = "127.0.0.1",
    port: int = 0,
    **limits: Any,
) -> Iterator[ViewServer]:
    """A server in a background thread (tests and benches), shut down on exit; `limits` are
    `ViewServer`'s ``idle_timeout`` and ``max_connections``."""
    server = ViewServer(site, image_root, images, host, port, **limits)
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
