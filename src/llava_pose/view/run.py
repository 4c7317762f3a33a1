"""`llava-pose view DIR`: what DIR is, where its keypoints and images are, then serve or export.

DIR is a `generate` output folder (``llava_pose_all.json``, or a LLaVA JSON file itself), an
E-HPAUB folder from `bench build` (``questions.jsonl`` + ``context.jsonl``), a PoseQA folder
from `poseqa build` (its manifest says ``"benchmark": "PoseQA"``), or an earlier ``--export``,
which is served as it is: build a large dataset once, serve it at once from then on.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EXIT_OK, ConfigError, InputError
from ..records import ImageContext
from .config import Contexts, ViewConfig, _stats_source, load_contexts
from .model import SiteData

if TYPE_CHECKING:
    from .server import ViewServer

log = logging.getLogger("llava_pose")


# -- what DIR is ------------------------------------------------------------------------------


def detect(folder: Path) -> str:
    """``dataset``, ``ehpaub``, ``poseqa``, or ``site`` (an export, served as it is); an
    InputError when DIR is none of them."""
    from ..io import read_json
    from .datasets import RECORDS_FILE
    from .site import MARKER

    if folder.is_file():
        if folder.suffix == ".json":
            return "dataset"
        raise InputError(folder, "expected a folder, or a LLaVA JSON file (.json)")
    if not folder.is_dir():
        raise InputError(folder, "not found")
    if (folder / MARKER).is_file():
        return "site"
    if (folder / "questions.jsonl").is_file():
        manifest = folder / "manifest.json"
        if manifest.is_file() and read_json(manifest).get("benchmark") == "PoseQA":
            return "poseqa"
        return "ehpaub"
    if (folder / RECORDS_FILE).is_file():
        return "dataset"
    raise InputError(
        folder,
        f"neither a generate output ({RECORDS_FILE}) nor a benchmark folder (questions.jsonl)",
    )


# -- the three kinds --------------------------------------------------------------------------


def _dataset(cfg: ViewConfig, folder: Path) -> tuple[SiteData, Path | None]:
    from ..io import read_json
    from .datasets import CLAIMS_FILE, RECORDS_FILE, REJECTED_FILE, STATS_FILE, load_dataset

    if cfg.answers or cfg.reviews:
        flag = "--answers" if cfg.answers else "--reviews"
        raise ConfigError(f"{flag}: only for a benchmark folder; {folder} is a dataset")
    records_path = folder if folder.is_file() else folder / RECORDS_FILE
    base = records_path.parent
    stats_path = base / STATS_FILE
    stats = read_json(stats_path) if not folder.is_file() and stats_path.is_file() else {}
    if cfg.coco or cfg.contexts or not stats:
        kind, source = "sample", None  # the options decide (`load_contexts`), else the sample
    else:
        kind, source = _stats_source(base, stats)
    rejected = base / REJECTED_FILE if not folder.is_file() else None
    own_claims = base / CLAIMS_FILE if not folder.is_file() else None
    claim_paths = [p for p in [own_claims] if p is not None and p.is_file()]
    for given in cfg.claims:
        if not Path(given).is_file():
            raise InputError(given, "claims file not found (from `llava-pose verify --out DIR`)")
        claim_paths.append(Path(given))
    found: list[Contexts] = []

    def contexts_for(images: list[str]) -> Callable[[str], ImageContext | None]:
        found.append(load_contexts(cfg, kind, source, stats.get("split"), images))
        return found[0].find

    data = load_dataset(
        records_path,
        rejected_path=rejected if rejected is not None and rejected.is_file() else None,
        claim_paths=claim_paths,
        contexts_for=contexts_for,
        stats=stats,
    )
    return data, found[0].image_root if found else None


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The collector off while millions of small acyclic objects are made (pages, rows,
    turns): its passes over them would take most of the time at 200k records (as in
    `coco.read_split`)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()  # what was made lives as long as the site: later passes skip it
        if was:
            gc.enable()


def build(cfg: ViewConfig) -> tuple[SiteData, Path | None]:
    """Read and check everything DIR and the options name; the site data and image root."""
    with no_gc():
        return _build(cfg)


def _build(cfg: ViewConfig) -> tuple[SiteData, Path | None]:
    folder = Path(cfg.folder)
    kind = detect(folder)
    if kind == "dataset":
        return _dataset(cfg, folder)
    if cfg.claims:
        raise ConfigError(f"--claims: only for a dataset; {folder} is a benchmark folder")
    from .benchmarks import load_ehpaub, load_poseqa

    if kind == "ehpaub":
        return load_ehpaub(cfg, folder)
    if cfg.reviews:
        raise ConfigError("--reviews: PoseQA is scored by exact match, not by a judge")
    return load_poseqa(cfg, folder)


# -- serve or export --------------------------------------------------------------------------


def listen_error(host: str, port: int, error: OSError) -> ConfigError:
    """The option to blame when the server cannot listen, in one line: the host (a name that
    does not resolve, an address of another machine) or the port (in use, not allowed). Pure."""
    reason = error.strerror or str(error)
    if isinstance(error, socket.gaierror):
        problem = f"cannot resolve it ({reason})"
    elif error.errno in (errno.EADDRINUSE, errno.EACCES):
        return ConfigError(
            f"--port {port}: cannot listen on {host}:{port} ({reason}); choose another port "
            "(0: any free one)"
        )
    else:
        problem = f"cannot listen on it ({reason})"
    return ConfigError(
        f"--host {host}: {problem}; give an address of this machine (127.0.0.1, ::1, or "
        "0.0.0.0 for every one)"
    )


def _listen(cfg: ViewConfig, site: Path) -> ViewServer:
    """The server, bound (before any data is read, so a host or port it cannot use fails at
    once); a warning when it listens beyond this machine."""
    from .server import ViewServer, is_loopback

    try:
        server = ViewServer(site, None, frozenset(), cfg.host, cfg.port)
    except OSError as e:
        raise listen_error(cfg.host, cfg.port, e) from None
    if not is_loopback(str(server.server_address[0])):
        log.warning(
            "--host %s: the data is exposed to the network: anyone who can reach port %d of "
            "this machine can browse its pages and images (the default, 127.0.0.1, keeps it "
            "to this machine)",
            cfg.host,
            server.server_address[1],
        )
    return server


def _serve(server: ViewServer) -> None:
    """Serve until Ctrl-C (or SIGTERM). The signal asks the loop to stop instead of raising
    wherever the main thread happens to be: a Ctrl-C that came just after the URL was printed,
    before the loop began, used to end the command as interrupted (exit 130)."""

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, name="view-stop", daemon=True).start()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"serving {server.url}  (Ctrl-C to stop)", flush=True)
        server.serve_forever()
        print("stopped", flush=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _serve_export(cfg: ViewConfig, folder: Path) -> int:
    """An export is the site itself (thumbnails inside): served as it is, nothing rebuilt."""
    given = [
        flag
        for flag, value in (
            ("--export", cfg.export), ("--answers", cfg.answers), ("--reviews", cfg.reviews),
            ("--claims", cfg.claims), ("--coco", cfg.coco), ("--contexts", cfg.contexts),
            ("--image-root", cfg.image_root), ("--split", cfg.split),
        )
        if value
    ]  # fmt: skip
    if given:
        raise ConfigError(
            f"{given[0]}: {folder} is already a built site (an export); serve it as it is"
        )
    server = _listen(cfg, folder)
    try:
        _serve(server)
    finally:
        server.server_close()
    return EXIT_OK


def run_view(cfg: ViewConfig) -> int:
    if detect(Path(cfg.folder)) == "site":
        return _serve_export(cfg, Path(cfg.folder))
    if cfg.export:
        return _export(cfg, Path(cfg.export))
    from .site import writing

    with writing(Path(tempfile.gettempdir())):
        site = Path(tempfile.mkdtemp(prefix="llava-pose-view-"))
    try:
        server = _listen(cfg, site)
        try:
            _serve_built(cfg, server)
        finally:
            server.server_close()
    finally:
        shutil.rmtree(site, ignore_errors=True)
    return EXIT_OK


def _serve_built(cfg: ViewConfig, server: ViewServer) -> None:
    """Build the site into the server's (temp) folder, then serve it with its images."""
    from .site import served_src, write_site, writing

    started = time.perf_counter()
    data, image_root = build(cfg)
    if image_root is None:
        log.info("no image root known: pages show the keypoints without photos (--image-root)")
    src, served = served_src(image_root)
    with writing(server.site), no_gc():  # a temp folder: its disk may be full too
        write_site(data, server.site, src)
    log.info(
        "%s %s of %s images ready in %.1f s",
        f"{len(data.rows):,}",
        data.noun,
        f"{len(data.pages):,}",
        time.perf_counter() - started,
    )
    del data  # the shards hold it now
    server.image_root, server.images = image_root, frozenset(served)
    _serve(server)


def _export(cfg: ViewConfig, out: Path) -> int:
    """Write the site and its thumbnails to `out` (replaced whole when done). An image that
    cannot be read, or is not the size its annotations say, is skipped and counted; a folder
    that cannot be written is one line naming it."""
    from .site import check_export, export_folder, make_thumbs, write_site, writing

    started = time.perf_counter()
    check_export(out)  # before minutes of reading
    data, image_root = build(cfg)
    if image_root is None:
        log.info("no image root known: pages show the keypoints without photos (--image-root)")
    sizes = {key: (int(p["w"]), int(p["h"])) for key, p in data.pages.items()}
    with writing(out), export_folder(out) as (tmp, old):
        urls, skipped = make_thumbs(image_root, tmp, old, sizes)
        with no_gc():
            write_site(data, tmp, urls.get)
    if skipped:
        log.warning("%s: e.g. %s", _skipped(len(skipped)), skipped[0])
    print(
        f"wrote {len(data.rows):,} {data.noun} of {len(data.pages):,} images to {out} "
        f"in {time.perf_counter() - started:.1f} s"
        + (f", {_skipped(len(skipped))}" if skipped else "")
        + f": open {out / 'index.html'}"
    )
    return EXIT_OK


def _skipped(n: int) -> str:
    return (
        f"{n:,} {'image' if n == 1 else 'images'} skipped (unreadable, or not the size annotated)"
    )
