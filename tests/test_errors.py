"""`redact`: secrets leave the process neither whole nor in part; innocent text stays."""

from __future__ import annotations

import pytest

from llava_pose.errors import display_url, forget_secrets, redact, register_secret

KEY = "sk-proj-Qw3rTy9UiOp4AsDf7GhJk"


@pytest.fixture(autouse=True)
def secret():
    register_secret(KEY)
    yield
    forget_secrets()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {KEY} rejected", "key *** rejected"),
        (
            f"Incorrect API key provided: {KEY[:12]}...{KEY[-4:]}.",
            "Incorrect API key provided: ***",
        ),
        (f'{{"key": "{KEY[:10]}**********{KEY[-4:]}"}}', '{"key": "***"}'),
        (f"the middle {KEY[9:20]} alone", "the middle *** alone"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_a_key_whole_or_in_part_is_replaced(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_low_variety_runs_of_a_key_do_not_hide_innocent_text() -> None:
    register_secret("sk-wrong-key-000000000")
    assert redact("val2017/000000000000.jpg") == "val2017/000000000000.jpg"
    assert redact("sk-wrong-key-000000000") == "***"


def test_forgotten_secrets_are_no_longer_scrubbed() -> None:
    register_secret("hunter2-pw-1234")
    assert redact("pw hunter2-pw-1234") == "pw ***"
    forget_secrets()
    assert redact("pw hunter2-pw-1234") == "pw hunter2-pw-1234"


def test_a_password_in_a_url_is_masked_and_remembered() -> None:
    assert display_url("http://alice:s3cret-Pass@proxy:8080/v1") == "http://alice:***@proxy:8080/v1"
    assert redact("failed: s3cret-Pass") == "failed: ***"
    assert display_url("http://host/v1") == "http://host/v1"
