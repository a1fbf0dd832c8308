"""``convlens serve``: start the explorer on this machine and print its address."""
from __future__ import annotations

import argparse
import socket
import sys
import threading

from convlens.cli.common import FORMATTER, add_network, model_options
from convlens.errors import ConvlensError, ModelError
from convlens.server.pool import QUEUE, WORKERS

__all__ = ["add_parser", "run", "LOOPBACK"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")

_EXAMPLES = """examples:
  convlens serve                       the toy-network editor, zoo models, the cat
  convlens serve --model zoo:efficientnet-lite0 --open
  convlens serve --model my_model.keras --port 8080
  convlens serve --model mynet.py:ResCat --weights w.pt
  convlens serve --trace run.npz       a saved Trace (Trace.save), shown as it is
  convlens serve --atlas atlas-out/    an atlas (convlens atlas -o atlas-out), linked

The page: choose an image (the cat, a digit, your own: upload or drop it) and a model
(or load a .keras, .h5, .onnx or .pt2 file from the page), and a preprocessing preset;
see every stage, every channel, and how one value is computed.  --model is loaded
before the server starts: a bad file is one line and exit status 2.  Ctrl+C stops it.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve", help="explore a network in your browser (a local web app)",
        description="Start the convlens explorer, a local web app, and print its URL.",
        epilog=_EXAMPLES, formatter_class=FORMATTER)
    add_network(p, required=False, net=False, backend=False, seed=False, preprocess=False)
    p.add_argument("--trace", metavar="FILE.npz", action="append", default=[],
                   help="a Trace saved with Trace.save (repeatable): offered among the "
                        "models and opened first")
    p.add_argument("--atlas", metavar="DIR", action="append", default=[],
                   help="a folder written by convlens atlas (repeatable): its pages are "
                        "served and linked from the page")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000,
                   help="port (default: %(default)s; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    p.add_argument("--torch-threads", type=int, default=1, metavar="N",
                   help="PyTorch CPU threads per capture (default: %(default)s)")
    p.add_argument("--workers", type=int, default=WORKERS, metavar="N",
                   help="requests computed at once (default: %(default)s)")
    p.add_argument("--queue", type=int, default=QUEUE, metavar="N",
                   help="requests that may wait for a worker; any more are answered "
                        "503 with Retry-After (default: %(default)s)")
    return p


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise ConvlensError(f"--port {port} is not a port number; expected 0..65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConvlensError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); expected "
                            "a free port on a local address — try --port 0 for any free port")
    return sock


def _warm_up(app) -> None:
    """Import PyTorch, run the default toy network once and read the digits, so the
    first page (and the first digit) comes quickly."""
    from convlens.server.compute import DEFAULT_SPEC, make_entry
    try:
        make_entry(app.state.explorer, "cat", "toy", DEFAULT_SPEC, 0)
        app.state.explorer.image("digit-0")  # reads scikit-learn's digits
    except Exception:  # only a head start; the page reports real errors itself
        pass


def _check_model(app, model: str, options: dict) -> None:
    """Load the ``--model`` before listening, through the same path the page uses; any
    failure is one line (a loader's unexpected exception included)."""
    from convlens.capture.factory import is_factory
    if options["weights"] is not None and not is_factory(model):
        raise ModelError(f"--weights {options['weights']} goes with --model MODULE:CALLABLE "
                         f"(the code that builds the model); got --model {model}")
    state = app.state.explorer
    try:
        state.model(state.default_model())
    except ConvlensError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ModelError(f"{model}: cannot load this model ({type(exc).__name__}: {text}); "
                         "expected a complete, valid model file — save or export it again") \
            from None


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from convlens.server.app import create_app
    except ImportError as exc:
        raise ConvlensError(f"convlens serve needs FastAPI and uvicorn ({exc.name} is missing); "
                            "install them with pip install 'convlens[serve]'") from None
    if args.torch_threads < 1:
        raise ConvlensError(f"--torch-threads {args.torch_threads} is not valid; "
                            "expected 1 or more")
    if args.workers < 1 or args.queue < 0:
        raise ConvlensError(f"--workers {args.workers} --queue {args.queue} is not valid; "
                            "expected --workers 1 or more and --queue 0 or more")
    options = model_options(args)
    if options["weights"] is not None and not args.model:
        raise ConvlensError(f"--weights {options['weights']} goes with --model MODULE:CALLABLE "
                            "(the code that builds the model); add --model")
    loopback = args.host in LOOPBACK
    hosts = ["127.0.0.1", "localhost", "[::1]", "::1"] if loopback else None
    traces = {}
    for path in getattr(args, "trace", None) or []:
        from pathlib import Path

        from convlens.trace import Trace
        tr = Trace.load(path)  # a bad file: TraceError, one line
        traces[f"{Path(path).name}: {tr.model_name} ({len(tr)} stages)"] = tr
    app = create_app(args.model, allowed_hosts=hosts, torch_threads=args.torch_threads,
                     traces=traces, workers=args.workers, queue=args.queue,
                     atlases=list(args.atlas), **options)
    if args.model:  # load it now: a bad file is a one-line error, not a broken page
        _check_model(app, args.model, options)
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    url = _url(args.host, port)
    if not loopback:
        sys.stderr.write(f"convlens serve: listening on {args.host}, reachable from other "
                         "machines; the explorer has no login — use 127.0.0.1 unless you "
                         "trust the network\n")
    threading.Thread(target=_warm_up, args=(app,), daemon=True).start()
    print(f"convlens explorer: {url}  (Ctrl+C to stop)", flush=True)
    if args.open:
        import webbrowser
        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
