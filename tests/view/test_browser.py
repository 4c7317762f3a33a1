"""The pages in a real chromium (playwright, Debian's chromium): overlays, filters, search,
keyboard and links, markup in the data, the static export from file://, benchmark pages."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.view.conftest import MARKUP, Page, cli
from tests.view.helpers import site

from llava_pose.coco import load_split
from llava_pose.skeleton import person_labels
from llava_pose.view.model import SiteData
from llava_pose.view.server import serving
from llava_pose.view.site import THUMB_SIDE, bucket_of

pytestmark = pytest.mark.browser


class Served:
    def __init__(self, data: SiteData, url: str) -> None:
        self.data, self.url = data, url


def _serve(folder: Path, out: Path, **options: Any) -> Iterator[Served]:
    data, root, served = site(folder, out, **options)
    with serving(out, root, frozenset(served)) as server:
        yield Served(data, server.url)


@pytest.fixture(scope="module")
def rules_site(rules_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(rules_out, tmp_path_factory.mktemp("rules-site"))


@pytest.fixture(scope="module")
def llm_site(llm_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(llm_out, tmp_path_factory.mktemp("llm-site"))


@pytest.fixture(scope="module")
def ehpaub_site(
    ehpaub: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    answers, reviews = [str(ehpaub["answers"])], [str(ehpaub["reviews"])]
    out = tmp_path_factory.mktemp("ehpaub-site")
    yield from _serve(ehpaub["bench"], out, answers=answers, reviews=reviews)


@pytest.fixture(scope="module")
def poseqa_site(
    poseqa: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    out = tmp_path_factory.mktemp("poseqa-site")
    yield from _serve(poseqa["bench"], out, answers=[str(poseqa["answers"])])


def link(url: str, key: str, item: int | None = None) -> str:
    return (
        url
        + "#image="
        + urllib.parse.quote(key, safe="")
        + (f"&item={item}" if item is not None else "")
    )


def rows(page: Any) -> list[str]:
    return page.eval_on_selector_all("#rows li .rid", "els => els.map(e => e.textContent)")


def wait_list(page: Any, total: int, query: str = "") -> None:
    page.wait_for_selector(
        f'#rows[data-done="true"][data-total="{total}"][data-query="{query}"]', state="attached"
    )


def test_each_person_draws_one_circle_per_labelled_keypoint(
    tab: Page, rules_site: Served, coco_mini: Path
) -> None:
    contexts = {c.image: c for c in load_split(coco_mini, "val2017", human_only=False)}
    page = tab.open(rules_site.url)
    checked = 0
    for key in rules_site.data.pages:
        page.evaluate("h => { location.hash = h }", link("", key))
        page.wait_for_selector(f'article.page[data-key="{key}"]')
        drawn = page.eval_on_selector_all(
            "#detail g.person",
            """gs => gs.map(g => ({
                label: g.dataset.label,
                visible: g.querySelectorAll('circle.kp.visible').length,
                hidden: g.querySelectorAll('circle.kp.hidden').length,
                boxes: g.querySelectorAll('rect.box').length,
                text: g.querySelector('text.label').textContent,
            }))""",
        )
        ctx = contexts[key]
        assert [d["label"] for d in drawn] == [d["text"] for d in drawn] == person_labels(ctx)
        for d, person in zip(drawn, ctx.persons, strict=True):
            assert d["visible"] == sum(1 for _, _, v in person.keypoints if v == 2)
            assert d["hidden"] == sum(1 for _, _, v in person.keypoints if v == 1)
            assert d["boxes"] == 1
            checked += d["visible"] + d["hidden"]
    expected = sum(p.num_labelled for k in rules_site.data.pages for p in contexts[k].persons)
    assert checked == expected == 425 and tab.errors == []


def test_hidden_points_are_drawn_apart_and_limbs_in_side_colours(
    tab: Page, rules_site: Served
) -> None:
    page = tab.open(link(rules_site.url, "val2017/000000109313.jpg"))
    style = page.eval_on_selector(
        "#detail g.person",
        """g => ({
            hidden: [...g.querySelectorAll('circle.kp.hidden')].map(c => [getComputedStyle(c).fill, getComputedStyle(c).strokeDasharray]),
            visible: [...g.querySelectorAll('circle.kp.visible')].map(c => getComputedStyle(c).fill),
            left: g.querySelector('circle[data-keypoint="9"]').getAttribute('fill'),
            right: g.querySelector('circle[data-keypoint="10"]').getAttribute('fill'),
        })""",
    )
    assert style["hidden"] and all(
        f == "rgb(255, 255, 255)" and d != "none" for f, d in style["hidden"]
    )
    assert all(f != "rgb(255, 255, 255)" for f in style["visible"])
    assert (style["left"], style["right"]) == ("#0072B2", "#D55E00")  # own left wrist, right wrist


def test_filters_and_search_change_the_visible_records(tab: Page, rules_site: Served) -> None:
    page = tab.open(rules_site.url)
    data = rules_site.data
    wait_list(page, 42)
    assert rows(page) == [r.id for r in data.rows]
    page.check('#facets input[data-facet="task"][value="detail"]')
    wait_list(page, 14)
    assert rows(page) == [r.id for r in data.rows if r.facets["task"] == ["detail"]]
    page.check('#facets input[data-facet="task"][value="reasoning"]')  # any of a facet's values
    wait_list(page, 28)
    page.check('#facets input[data-facet="verdict"][value="supported"]')  # and every facet
    expected = [
        r.id for r in data.rows
        if r.facets["task"][0] in ("detail", "reasoning") and "supported" in r.facets["verdict"]
    ]  # fmt: skip
    wait_list(page, len(expected))
    assert rows(page) == expected and 0 < len(expected) < 28
    page.fill("#search", "Standing")
    page.press("#search", "Enter")
    both = [r.id for r in data.rows if r.id in expected and "standing" in r.text.lower()]
    wait_list(page, len(both), "Standing")
    assert rows(page) == both and 0 < len(both) < len(expected)
    for value in ("detail", "reasoning", "supported"):
        page.uncheck(f'#facets input[value="{value}"]')
    matches = [r.id for r in data.rows if "standing" in r.text.lower()]
    wait_list(page, len(matches), "Standing")
    assert rows(page) == matches
    page.fill("#search", "doughnut factory")  # every word, anywhere in the record
    page.press("#search", "Enter")
    words = [
        r.id for r in data.rows if "doughnut" in r.text.lower() and "factory" in r.text.lower()
    ]
    wait_list(page, len(words), "doughnut factory")
    assert rows(page) == words == ["34417-conv", "34417-detail", "34417-reasoning"]
    page.fill("#search", "no such words here")
    page.press("#search", "Enter")
    wait_list(page, 0, "no such words here")
    assert rows(page) == [] and "no records match" in page.text_content("#status")
    assert tab.errors == []


def test_filter_reasons_and_verdicts_of_dropped_replies(tab: Page, llm_site: Served) -> None:
    page = tab.open(llm_site.url)
    page.check('#facets input[data-facet="filter"][value="contradicts_pose"]')
    [lying] = [r for r in llm_site.data.rows if r.facets["filter"] == ["contradicts_pose"]]
    wait_list(page, 1)
    assert rows(page) == [lying.id]
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail .item.current.rejected")
    current = page.locator("#detail .item.current")
    assert "dropped: contradicts_pose" in current.inner_text()
    assert "lying down" in current.locator("mark.claim.v-contradicted").inner_text()
    assert "✗ contradicted" in current.locator(".claimlist").inner_text()
    page.uncheck('#facets input[value="contradicts_pose"]')
    page.check('#facets input[data-facet="filter"][value="kept"]')
    wait_list(page, sum(r.facets["filter"] == ["kept"] for r in llm_site.data.rows))


def test_keyboard_moves_opens_and_links_name_each_image(tab: Page, rules_site: Served) -> None:
    page = tab.open(rules_site.url)
    first = rules_site.data.rows[0]
    assert page.get_attribute("#detail article.page", "data-key") == first.key
    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("j")
    page.keyboard.press("k")
    third = rules_site.data.rows[2]
    assert page.get_attribute("#rows li.selected", "data-row") == "2"
    page.keyboard.press("Enter")
    page.wait_for_function(f"location.hash === {json.dumps(link('', third.key, third.item))}")
    page.wait_for_selector(f'#detail .item.current[data-item="{third.item}"]')
    for _ in range(3):
        page.keyboard.press("j")
    page.keyboard.press("Enter")
    fourth_image = rules_site.data.rows[5]
    page.wait_for_selector(f'article.page[data-key="{fourth_image.key}"]')
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") != "search"
    # A link opens its image's page directly (a fresh tab), the bucket found by the key alone.
    key = rules_site.data.rows[-1].key
    page.goto(link(rules_site.url, key, 1))
    page.wait_for_selector(f'article.page[data-key="{key}"] .item.current[data-item="1"]')
    assert page.evaluate("k => LPV.bucketOf(k, 7)", key) == bucket_of(key, 7)
    assert page.evaluate("LPV.bucketOf('é/ü.jpg', 1000)") == bucket_of("é/ü.jpg", 1000)
    page.goto(rules_site.url + "#image=nowhere.jpg")
    page.wait_for_selector("#detail .error")
    assert tab.errors == []


def test_markup_in_the_data_is_shown_as_text_and_runs_nothing(tab: Page, llm_site: Served) -> None:
    row = next(r for r in llm_site.data.rows if MARKUP in r.text)
    page = tab.open(link(llm_site.url, row.key, row.item))
    page.wait_for_selector("#detail .item.current")
    assert MARKUP in page.inner_text("#detail .item.current")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#detail script").count() == 0 and page.locator('img[src="x"]').count() == 0
    page.fill("#search", "<script>")
    page.press("#search", "Enter")
    wait_list(page, 3, "<script>")
    assert page.evaluate("window.__pwned") is None and tab.errors == []


def test_export_opens_from_file_with_no_console_errors(
    tab: Page, llm_out: Path, tmp_path: Path, coco_mini: Path
) -> None:
    out = tmp_path / "site"
    assert cli("view", llm_out, "--export", out) == 0
    thumbs = sorted((out / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == 3
    for thumb in thumbs:
        with (
            Image.open(thumb) as im,
            Image.open(coco_mini / thumb.relative_to(out / "thumbs")) as real,
        ):
            assert max(im.size) <= THUMB_SIDE
            assert abs(im.size[0] / im.size[1] - real.size[0] / real.size[1]) < 0.01
    page = tab.open((out / "index.html").as_uri())
    page.wait_for_function("document.querySelector('#detail img').naturalWidth > 0")
    page.check('#facets input[data-facet="filter"][value="mentions_source"]')
    wait_list(page, 3)
    page.fill("#search", "keypoints say")
    page.press("#search", "Enter")
    wait_list(page, 3, "keypoints say")
    page.keyboard.press("Escape")  # out of the search box: keys move in the list again
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail .item.current.rejected")
    assert page.locator("#detail svg circle").count() > 0
    assert tab.errors == []
    # Exported again over itself: replaced whole, thumbnails reused.
    assert cli("view", llm_out, "--export", out) == 0
    assert (out / "index.html").is_file() and len(list((out / "thumbs").rglob("*.jpg"))) == 3


def test_ehpaub_pages_show_answers_scores_and_sort_by_gap(tab: Page, ehpaub_site: Served) -> None:
    s = ehpaub_site
    page = tab.open(s.url)
    page.select_option("#sort", "gap:0:strong")
    page.wait_for_selector("#rows li")
    page.keyboard.press("Enter")
    item = page.locator("#detail .item.current")
    item.wait_for()
    text = item.inner_text()
    first = s.data.pages[s.data.rows[0].key]["items"][s.data.rows[0].item]
    assert first["question"] in text and first["reference"] in text
    weak = item.locator('.answer[data-model="weak"]').inner_text()
    strong = item.locator('.answer[data-model="strong"]').inner_text()
    assert "model 5 vs reference 8 (gap 3)" in weak and "Assistant 2 is vaguer" in weak
    assert "STRONG answer to" in strong and "model 7 vs reference 8 (gap 1)" in strong
    assert "weak 5/8" in page.inner_text("#rows li.selected")
    assert page.evaluate("window.__pwned") is None and tab.errors == []


def test_poseqa_pages_mark_answers_right_or_wrong(tab: Page, poseqa_site: Served) -> None:
    s = poseqa_site
    page = tab.open(s.url)
    n = len(s.data.rows)
    wait_list(page, n)
    assert page.locator("#detail .mark-right").count() == page.locator("#detail .item").count()
    assert page.locator("#detail .mark-wrong").count() == page.locator("#detail .item").count()
    assert "Gold answer:" in page.inner_text("#detail .item.current")
    page.check('#facets input[data-facet="model:oracle"][value="right"]')
    wait_list(page, n)
    page.uncheck('#facets input[data-facet="model:oracle"][value="right"]')
    page.check('#facets input[data-facet="family"]')
    family = s.data.facets[0].values[0]
    wait_list(page, sum(r.facets["family"] == [family] for r in s.data.rows))
    focused = page.eval_on_selector_all(
        "#detail g.person.focus", "gs => gs.map(g => Number(g.dataset.person))"
    )
    current = s.data.pages[s.data.rows[0].key]["items"][s.data.rows[0].item]
    assert focused == current["persons"]  # the people the question is about
    assert tab.errors == []
