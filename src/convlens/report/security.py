"""The security policy of every page convlens serves or writes, in one place.

* The explorer (``convlens serve``) sends :data:`HEADERS` with every response, and a
  Content-Security-Policy: :data:`EXPLORER_POLICY` for the page (same-origin ES modules
  and style sheet, ``fetch`` to itself, pictures from itself or ``data:``),
  :data:`API_POLICY` for everything else (no page may be built from a response), and
  :func:`page_policy` of the document for an HTML report it sends.
* An HTML file convlens writes (``convlens report``, the demo's ``report.html`` and
  ``index.html``) carries the same policy in ``<meta>`` tags: :func:`harden_html`.

No policy names an outside source.  Pages have no script; their one ``<style>`` block
is allowed by its SHA-256 hash, never by ``'unsafe-inline'``; only a page with
``style`` attributes (the bars of a predictions table) allows those, through
``style-src-attr``.
"""
from __future__ import annotations

import base64
import hashlib
import re

__all__ = ["HEADERS", "EXPLORER_POLICY", "API_POLICY", "style_hash", "page_policy",
           "meta_tags", "harden_html", "csp"]

HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
"""Sent with every response of the explorer (beside a Content-Security-Policy)."""


def csp(**directives: str) -> str:
    """A policy: ``default-src 'none'`` (nothing that is not named), no ``<base>``, no
    form posts, no framing by any page, plus ``directives`` (``script_src="'self'"``)."""
    parts = {"default-src": "'none'", "base-uri": "'none'", "form-action": "'none'"}
    parts.update({k.replace("_", "-"): v for k, v in directives.items()})
    parts["frame-ancestors"] = "'none'"
    return "; ".join(f"{k} {v}" for k, v in parts.items())


EXPLORER_POLICY = csp(script_src="'self'", style_src="'self'", img_src="'self' data:",
                      connect_src="'self'")
"""The explorer page: its ES modules, style sheet and API are same-origin."""
API_POLICY = csp()
"""Any other response (JSON, frames, PNG, SVG, .npz): nothing may load or run."""

_STYLE = re.compile(r"<style>(.*?)</style>", re.S)
_STYLE_ATTR = re.compile(r"<[^>]*\sstyle\s*=", re.I)


def style_hash(css: str) -> str:
    """``'sha256-...'``: the source expression that allows one ``<style>`` block."""
    digest = hashlib.sha256(css.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def page_policy(doc: str) -> str:
    """The policy of a self-contained HTML document: pictures from the page's own
    folder or ``data:``, its ``<style>`` blocks by hash, ``style`` attributes only if
    it has some, no script, no connection."""
    hashes = sorted({style_hash(css) for css in _STYLE.findall(doc)})
    extra = {}
    if _STYLE_ATTR.search(doc):
        # style-src-attr: CSS 3 browsers allow the attributes and keep <style> to hashes
        extra["style_src_attr"] = "'unsafe-inline'"
    return csp(img_src="'self' data:", style_src=" ".join(hashes) or "'none'", **extra)


def meta_tags(policy: str) -> str:
    """``<meta>`` tags carrying ``policy`` and the referrer policy.  A policy delivered
    in ``<meta>`` ignores ``frame-ancestors`` (browsers say so in the console), so it is
    left out: framing can only be refused by a header (the explorer sends one).
    ``X-Content-Type-Options`` has no ``<meta>`` form either."""
    kept = "; ".join(d for d in policy.split("; ") if not d.startswith("frame-ancestors"))
    if '"' in kept or "<" in kept or "&" in kept:
        raise ValueError(f"a policy holds no quote, '<' or '&'; got {kept!r}")
    return (f'<meta http-equiv="Content-Security-Policy" content="{kept}">'
            '<meta name="referrer" content="no-referrer">')


_HEAD = re.compile(r"<head>(\s*<meta charset=['\"]utf-8['\"]>)?", re.I)


def harden_html(doc: str) -> str:
    """``doc`` with :func:`meta_tags` of its :func:`page_policy` at the start of its
    ``<head>`` (after the charset), before anything the policy governs."""
    m = _HEAD.search(doc)
    if m is None:
        raise ValueError("harden_html needs a document with a <head>")
    return doc[:m.end()] + meta_tags(page_policy(doc)) + doc[m.end():]
