"""Judge throughput: `llava-pose bench judge` at --concurrency 32 against the same command run
sequentially (--concurrency 1), both against the loopback OpenAI server (its own process)
answering every review after a fixed latency (default 1 s), in one command.

The workload is the paper's: 270 questions (90 images x 3 types, contexts with keypoints from
COCO-MINI val2017, cycled) x 2 models x 2 orders (--swap) = 1,080 reviews, through the whole
command (files read and checked, requests built, runner, cache, review files written). The
sequential baseline judges only the first --seq-questions questions (default 6: 24 reviews,
~24 s at 1 s latency); its time per review is extrapolated to the full 1,080 reviews, and the
output says so. Every run has its own cache, so nothing is served from a previous one.

    python perf/judge_throughput.py [--latency 1] [--concurrency 32] [--seq-questions 6]
    python perf/judge_throughput.py --images 10 --latency 0.2     # a quick look

Target: sequential (extrapolated) / concurrent >= 25x. Exit status 0 when met.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the loopback servers live in tests/servers

from llava_pose.coco import load_split  # noqa: E402
from llava_pose.ehpaub.files import context_line  # noqa: E402
from llava_pose.ehpaub.judge import JudgeConfig, run_judge  # noqa: E402

KEY = "sk-bench-not-a-real-key-0000"
TARGET = 25.0
SERVER = """
import sys, threading
from tests.servers import OpenAIServer
server = OpenAIServer(latency=float(sys.argv[1]), responder=lambda body: "8 7\\nAssistant 1 is more precise.")
server.start()
print(server.url, flush=True)
sys.stdin.read()  # until the parent closes our stdin
server.stop()
"""


def find_coco_mini() -> Path:
    """The COCO-MINI slice that ships with the tests (tests/data/coco-mini)."""
    return REPO / "tests" / "data" / "coco-mini"


def write_bench(folder: Path, images: int) -> int:
    """A benchmark folder of `images` x 3 questions with real COCO-MINI contexts (cycled, each
    under its own image name) and two models' answers; returns the number of questions."""
    contexts = load_split(find_coco_mini(), "val2017", min_keypoints=10)
    folder.mkdir(parents=True, exist_ok=True)
    questions, refs, context, answers = [], [], [], {"model-a": [], "model-b": []}
    for i in range(images):
        ctx = contexts[i % len(contexts)]
        image = f"synthetic/{i:06d}.jpg"
        context.append(context_line(ctx, image))
        for k, category in enumerate(("conv", "detail", "complex")):
            qid = 3 * i + k
            questions.append(
                {
                    "question_id": qid,
                    "image": image,
                    "category": category,
                    "text": f"What is the person on the left doing with their arms ({qid})?",
                }
            )
            refs.append(
                {
                    "question_id": qid,
                    "text": "The person raises both arms above the head "
                    "while stepping forward, as if celebrating a point. " * 3,
                }
            )
            for m in answers:
                answers[m].append(
                    {
                        "question_id": qid,
                        "model_id": m,
                        "text": f"{m}: the person lifts the arms and leans forward. " * 3,
                    }
                )
    for name, rows in (
        ("questions", questions),
        ("answers_ref", refs),
        ("context", context),
        *((f"answers-{m}", rows) for m, rows in answers.items()),
    ):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(questions)


def judge(bench: Path, out: Path, url: str, concurrency: int) -> float:
    cfg = JudgeConfig(
        bench=str(bench),
        answers=[str(bench / "answers-model-a.jsonl"), str(bench / "answers-model-b.jsonl")],
        judge="openai:gpt-4o",
        out=str(out),
        swap=True,
        base_url=url,
        concurrency=concurrency,
        timeout=120,
    )
    started = time.perf_counter()
    rc = run_judge(cfg)
    elapsed = time.perf_counter() - started
    meta = json.loads((out / "judge.json").read_text())
    if rc != 0 or meta["last_run"]["cached"] != 0:
        raise SystemExit(f"judge run failed (exit {rc}) or used a cache: {meta['last_run']}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--latency", type=float, default=1.0, help="server seconds per review")
    ap.add_argument("--images", type=int, default=90, help="benchmark images (x 3 questions)")
    ap.add_argument("--concurrency", type=int, default=32, help="reviews in flight in the fast run")
    ap.add_argument(
        "--seq-questions",
        type=int,
        default=6,
        help="questions in the sequential baseline (x 2 models x 2 orders)",
    )
    args = ap.parse_args(argv)
    os.environ["OPENAI_API_KEY"] = KEY
    logging.getLogger("llava_pose").setLevel(logging.WARNING)  # no progress bars in the timing

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.latency)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if not url.startswith("http://"):
            raise SystemExit(f"loopback server did not start: {url!r}")
        with tempfile.TemporaryDirectory() as tmp:
            full, small = Path(tmp) / "full", Path(tmp) / "small"
            n_full = write_bench(full, args.images)
            n_small = write_bench(small, max(1, args.seq_questions // 3))
            reviews_full, reviews_small = n_full * 2 * 2, n_small * 2 * 2
            seq = judge(small, Path(tmp) / "reviews-seq", url, concurrency=1)
            fast = judge(full, Path(tmp) / "reviews-fast", url, concurrency=args.concurrency)
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(10)

    per_review = seq / reviews_small
    seq_full = per_review * reviews_full
    ratio = seq_full / fast
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"server: loopback OpenAI API in its own process, {args.latency:g} s per review")
    print(f"workload: {n_full} questions x 2 models x 2 orders (--swap) = {reviews_full} reviews")
    print(
        f"concurrent (--concurrency {args.concurrency}): {fast:.1f} s, "
        f"{reviews_full / fast:.1f} reviews/s"
    )
    print(
        f"sequential (--concurrency 1): {seq:.1f} s for {reviews_small} reviews "
        f"({n_small} questions), {per_review:.3f} s per review; extrapolated to "
        f"{reviews_full} reviews: {seq_full:.0f} s"
    )
    print(f"speed-up: {ratio:.1f}x (target >= {TARGET:g}x; ideal {args.concurrency}x)")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
