"""First page of `llava-pose view` on a 200k-record dataset, against a 1k-record one, in chromium.

Both datasets are made here the same way: the offline teacher's real output on COCO-MINI
val2017 (42 records of 14 images, with its claims.jsonl) repeated under new image ids until
there are --records records (a third of them images), each image a hard link to its real COCO
JPEG and a context line of its real keypoints; one record in 50 is also written to
rejected.jsonl under a filter name. Then, for each size:

* index: what `llava-pose view DIR` does before it serves (read and check every file, build
  pages and rows, write the shards), timed;
* first page: a fresh chromium context (no cache) opens the served URL; the page reports when
  the list's first page and the first image's page (SVG overlay drawn) are in the DOM
  (`LPV.timing.firstPage`, ms since navigation start) and when the photo has loaded. Median of
  --repeat runs;
* search (largest size only): a word in about a third of the records; time to the first page
  of matches, and to the full count (the scan of every text shard).

    python perf/view_first_page.py                        # 200,000 vs 1,000 records
    python perf/view_first_page.py --records 20000 --repeat 1

Target: the first page at --records renders in under 2,000 ms. Exit status 0 when met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 2000.0
SEARCH_WORD = "standing"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def source_output(work: Path) -> Path:
    """The offline teacher's output on COCO-MINI val2017, pose check on (claims.jsonl)."""
    from llava_pose.cli import main

    out = work / "source"
    coco = REPO / "tests" / "data" / "coco-mini"
    args = ["-q", "generate", "--coco", str(coco), "--split", "val2017", "--teacher", "rules"]
    if main([*args, "--pose-filter", "--out", str(out)]) != 0:
        raise SystemExit("generate failed")
    return out


def make_dataset(source: Path, folder: Path, records: int) -> Path:
    """A generate-shaped folder of `records` records; returns its image root."""
    import msgspec

    from llava_pose.coco import load_split, write_contexts
    from llava_pose.filters import FILTERS

    coco = REPO / "tests" / "data" / "coco-mini"
    base = json.loads((source / "llava_pose_all.json").read_text())
    claims = {
        line["id"]: line
        for line in map(json.loads, (source / "claims.jsonl").read_text().splitlines())
    }
    contexts = {c.image: c for c in load_split(coco, "val2017", human_only=False)}
    per_image: dict[str, list[dict[str, Any]]] = {}
    for r in base:
        per_image.setdefault(r["image"], []).append(r)
    images = list(per_image)
    root = folder / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "src").mkdir()
    for image in images:
        shutil.copy(coco / image, root / "src" / Path(image).name)
    out_records: list[dict[str, Any]] = []
    out_claims: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    out_contexts = []
    k = 0
    while len(out_records) < records:
        image = images[k % len(images)]
        image_id = 1_000_000 + k
        name = f"val2017/{image_id:012d}.jpg"
        os.link(root / "src" / Path(image).name, root / name)
        ctx = contexts[image]
        out_contexts.append(msgspec.structs.replace(ctx, image_id=image_id, image=name))
        for r in per_image[image]:
            if len(out_records) >= records:
                break
            rid = f"{image_id}-" + r["id"].split("-", 1)[1]
            out_records.append({**r, "id": rid, "image": name})
            line = claims.get(r["id"])
            if line is not None:
                out_claims.append({**line, "id": rid, "image": name, "image_id": image_id})
            if len(out_records) % 50 == 0:
                turns = r["conversations"]
                rejected.append(
                    {
                        "id": rid,
                        "image": name,
                        "task": "conversation",
                        "filter": FILTERS[len(rejected) % len(FILTERS)],
                        "question": turns[-2]["value"],
                        "answer": turns[-1]["value"],
                    }
                )
        k += 1
    write_contexts(folder / "contexts.jsonl", out_contexts)
    (folder / "llava_pose_all.json").write_bytes(msgspec.json.encode(out_records))
    encoder = msgspec.json.Encoder()
    (folder / "claims.jsonl").write_bytes(b"".join(encoder.encode(x) + b"\n" for x in out_claims))
    (folder / "rejected.jsonl").write_bytes(b"".join(encoder.encode(x) + b"\n" for x in rejected))
    stats = {
        "teacher": "rules (repeated)",
        "source": str(folder / "contexts.jsonl"),
        "split": "val2017",
    }
    (folder / "stats.json").write_text(json.dumps(stats))
    return root


def build_site(folder: Path, root: Path, site: Path) -> tuple[Any, set[str], float, float]:
    """`llava-pose view`'s work before serving, timed: (data, served images, read s, write s)."""
    from llava_pose.config import load_config
    from llava_pose.view.run import ViewConfig, build, no_gc
    from llava_pose.view.site import served_src, write_site

    started = time.perf_counter()
    data, image_root = build(
        load_config(ViewConfig, {"folder": str(folder), "image_root": str(root)})
    )
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    src, served = served_src(image_root)
    with no_gc():
        write_site(data, site, src)
    return data, served, read_s, time.perf_counter() - started


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def first_page(browser: Any, url: str) -> tuple[float, float]:
    """(ms to the first page in the DOM, ms to the photo loaded) in a fresh context."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("html[data-ready='1']", timeout=60_000)
    page.wait_for_function("LPV.timing.image > 0", timeout=60_000)
    timing = page.evaluate("LPV.timing")
    circles = page.locator("#detail svg circle").count()
    context.close()
    if errors or not circles:
        raise SystemExit(f"the page failed: {errors or 'no keypoints drawn'}")
    return float(timing["firstPage"]), float(timing["image"])


def search(browser: Any, url: str, rows: int) -> tuple[float, float, int]:
    """(ms to the first page of matches, ms to the full count, matches) of SEARCH_WORD."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("html[data-ready='1']", timeout=60_000)
    start = time.perf_counter()
    page.fill("#search", SEARCH_WORD)
    page.press("#search", "Enter")
    page.wait_for_selector(f'#rows[data-query="{SEARCH_WORD}"] li', timeout=600_000)
    first = (time.perf_counter() - start) * 1000
    page.wait_for_selector(
        f'#rows[data-query="{SEARCH_WORD}"][data-done="true"]', state="attached", timeout=600_000
    )
    full = (time.perf_counter() - start) * 1000
    matches = int(page.get_attribute("#rows", "data-total") or 0)
    context.close()
    return first, full, matches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="records of the big set")
    parser.add_argument("--baseline", type=int, default=1_000, help="records of the baseline set")
    parser.add_argument("--repeat", type=int, default=3, help="page loads per size (median)")
    parser.add_argument("--no-search", action="store_true", help="skip the search timing")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from llava_pose.view.server import serving

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        print("chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {platform.python_version()}")
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="view-bench-") as tmp:
        work = Path(tmp)
        source = source_output(work)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            print(f"browser: chromium {browser.version}")
            for n in (args.baseline, args.records):
                folder = work / f"data-{n}"
                started = time.perf_counter()
                root = make_dataset(source, folder, n)
                made = time.perf_counter() - started
                site = work / f"site-{n}"
                data, served, read_s, write_s = build_site(folder, root, site)
                files, size = folder_size(site)
                print(
                    f"{n:,} records ({len(data.pages):,} images; made in {made:.1f} s): index "
                    f"{read_s + write_s:.1f} s (read and check {read_s:.1f} s, write shards "
                    f"{write_s:.1f} s), {files:,} files, {size / 1e6:,.0f} MB"
                )
                with serving(site, root, frozenset(served)) as server:
                    loads = [first_page(browser, server.url) for _ in range(args.repeat)]
                    page_ms = statistics.median(t for t, _ in loads)
                    image_ms = statistics.median(t for _, t in loads)
                    print(
                        f"  first page: {page_ms:,.0f} ms (photo shown at {image_ms:,.0f} ms), "
                        f"median of {len(loads)}: {', '.join(f'{t:,.0f}' for t, _ in loads)}"
                    )
                    results[n] = {"page": page_ms, "image": image_ms}
                    if n == args.records and not args.no_search:
                        first, full, matches = search(browser, server.url, n)
                        print(
                            f"  search {SEARCH_WORD!r}: first page of matches {first:,.0f} ms, "
                            f"all {matches:,} matches counted in {full / 1000:,.1f} s"
                        )
                del data
                shutil.rmtree(folder)
                shutil.rmtree(site)
            browser.close()
    big, small = results[args.records]["page"], results[args.baseline]["page"]
    print(f"ratio {args.records:,} / {args.baseline:,} records: {big / small:.2f}x")
    met = big < TARGET_MS
    print(
        f"target: first page under {TARGET_MS:,.0f} ms at {args.records:,} records: "
        f"{big:,.0f} ms, {'met' if met else 'NOT met'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
