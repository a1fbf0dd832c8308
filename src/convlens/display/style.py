"""The CSS shared by the notebook views and the report (no fonts or files to fetch).

Every rule is scoped under ``.cl`` so a notebook's own styles are left alone.
"""
from __future__ import annotations

__all__ = ["CSS", "style_tag"]

CSS = """
.cl{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;line-height:1.35}
.cl h2,.cl h3,.cl h4{margin:.6em 0 .3em}
.cl .cl-muted{color:#666;font-size:.85em}
.cl .cl-head{font-weight:600;font-size:1.05em}
.cl img.cl-px,.cl img.cl-fig,.cl img.cl-card{image-rendering:pixelated;image-rendering:crisp-edges}
.cl img.cl-fig{max-width:100%;height:auto}
.cl .cl-grid{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start;margin:4px 0}
.cl figure.cl-tile{margin:0;text-align:center;font-size:11px}
.cl figure.cl-tile img{display:block;margin:0 auto;border:1px solid #bbb}
.cl .cl-strip{display:flex;flex-wrap:wrap;gap:4px;align-items:center;margin:4px 0}
.cl .cl-arrow{color:#999;font-size:18px;padding:0 2px}
.cl details.cl-more>summary{cursor:pointer;color:#1a5fb4;margin:4px 0}
.cl table.cl-table{border-collapse:collapse;font-size:12px;margin:4px 0}
.cl table.cl-table th,.cl table.cl-table td{border-bottom:1px solid #e3e3e3;padding:2px 8px;
 text-align:right;white-space:nowrap}
.cl table.cl-table th{background:#f4f4f4}
.cl table.cl-table td.cl-l,.cl table.cl-table th.cl-l{text-align:left}
.cl .cl-pbar{display:inline-block;height:9px;background:#3b6fb6;vertical-align:middle}
.cl code{background:#f3f3f3;padding:0 .3em;border-radius:3px}
"""


def style_tag() -> str:
    return f"<style>{CSS}</style>"
