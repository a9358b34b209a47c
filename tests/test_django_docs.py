"""The docs' reconnect snippets add as many lines to the original snippet as their prose says."""

from __future__ import annotations

import re

import pytest

from tests.django_site import REPO

NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
ORIGINAL = ("var ws", "ws.onmessage")
"""The original snippet's two statements: a reconnect snippet repeats them, adds the rest."""


def reconnect_snippet(text: str, claim: str) -> tuple[int, list[str]]:
    """The number the prose claims (`claim` has one group for the word) and the lines of the
    code block that follows it which are not the original snippet's statements."""
    match = re.search(claim, text)
    assert match, claim
    block = re.search(r"```js\n(.*?)```", text[match.end():], re.S)
    assert block
    added = [line for line in block.group(1).splitlines()
             if line.strip() and not line.strip().startswith(ORIGINAL)]
    return NUMBERS[match.group(1).lower()], added


@pytest.mark.parametrize(("doc", "claim"), [
    ("docs/django.md", r"calls itself on close to fix that \((\w+) lines\)"),
    ("docs/protocol.md", r"never reconnects\. (\w+) lines add it"),
])
def test_reconnect_snippet_adds_the_lines_the_prose_counts(doc: str, claim: str) -> None:
    """"N lines add reconnecting" matches the N lines the snippet adds to the original."""
    said, added = reconnect_snippet((REPO / doc).read_text(), claim)
    assert len(added) == said, added
