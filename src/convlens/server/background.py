"""Run the explorer in a background thread (tests, benchmarks, notebooks).

    with BackgroundServer(create_app()) as url:
        ...   # the page is at url until the block ends
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """uvicorn serving ``app`` on ``host`` and a free port, in a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", timeout: float = 20.0):
        import uvicorn
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.url = f"http://{host}:{self.sock.getsockname()[1]}/"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True, name="convlens-explorer")
        self.timeout = timeout

    def start(self) -> str:
        self.thread.start()
        end = time.monotonic() + self.timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the explorer server did not start")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(self.timeout)
        self.sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
