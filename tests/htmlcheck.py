"""Reading back the HTML convlens writes: every element's attributes, and pictures
decoded from their ``data:`` URIs."""
from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
from PIL import Image


class Elements(HTMLParser):
    """Collects ``(tag, attrs, inside_details_depth)`` for every start tag, the ids, and
    fails on unbalanced ``<details>``/``<div>``/``<section>``/``<figure>`` tags."""

    CHECKED = ("details", "div", "section", "figure", "table", "nav", "main")

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.items: list[tuple[str, dict[str, str], int]] = []
        self.ids: set[str] = set()
        self.stack: list[str] = []
        self.text_parts: list[str] = []
        self.feed(text)
        self.close()
        assert self.stack == [], f"unclosed tags: {self.stack}"

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        self.items.append((tag, a, self.stack.count("details")))
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids.add(a["id"])
        if tag in self.CHECKED:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.CHECKED:
            assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
            self.stack.pop()

    def handle_data(self, data):
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def imgs(self) -> list[tuple[dict[str, str], int]]:
        return [(a, d) for t, a, d in self.items if t == "img"]


def decode(src: str) -> Image.Image:
    head, payload = src.split(",", 1)
    assert head in ("data:image/png;base64", "data:image/gif;base64"), head
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def rgb(src: str) -> np.ndarray:
    return np.asarray(decode(src).convert("RGB"))
