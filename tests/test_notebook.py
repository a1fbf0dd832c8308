"""examples/tutorial.ipynb runs top to bottom without an error, headless (nbclient)."""
import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


def test_tutorial_notebook_executes(tmp_path, monkeypatch):
    # a kernel spec for *this* interpreter, so the notebook sees the same convlens
    spec = tmp_path / "jupyter" / "kernels" / "convlens-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "convlens test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    client = NotebookClient(nb, kernel_name="convlens-test", timeout=120,
                            resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o for o in outputs if "text/html" in o.get("data", {})]
    assert any("Trace · zoo:efficientnet-lite0" in o["data"]["text/html"] for o in html)
    assert (work / "cat-report.html").stat().st_size > 1_000_000
    assert (work / "lenet-pngs" / "manifest.json").is_file()
    assert (work / "lenet-cat.gif").read_bytes()[:6] == b"GIF89a"
