"""Browser tests under the pages' Content-Security-Policy: a watcher of violations and a
``wait_for_function`` that needs no ``eval`` in the page (the policy refuses it)."""
from __future__ import annotations

import time

WATCH_CSP = """window.__csp = [];
document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(`CSP: ${e.violatedDirective} ${e.blockedURI}`));"""
"""An init script: ``window.__csp`` lists every violation the page reports."""


def wait_js(pg, expr, arg=None, timeout=30_000):
    """``pg.wait_for_function(expr, arg=arg)`` without ``eval`` in the page, which the
    page's Content-Security-Policy refuses: ``pg.evaluate`` (the DevTools protocol, not
    the page's own scripts) polled until it is true."""
    end = time.monotonic() + timeout / 1000
    while not pg.evaluate(expr, arg):
        if time.monotonic() > end:
            raise AssertionError(f"waited {timeout} ms for {expr}")
        pg.wait_for_timeout(20)
