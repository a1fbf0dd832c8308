"""The explorer shows an atlas: its pages, crops and images served from the atlas folder
only, with each page's own policy; the page links to it."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import convlens  # noqa: E402
from convlens.server.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    imgs = root / "imgs"
    imgs.mkdir()
    for k in range(4):
        a = np.zeros((12, 12, 3), np.uint8)
        a[2 + 2 * k, 3 + k] = 250  # one bright pixel, a different place in each image
        Image.fromarray(a).save(imgs / f"i{k}.png")
    net = convlens.build(convlens.parse_spec("conv(2, 3x3) relu"), seed=0, in_shape=(3, 12, 12))
    from convlens.atlas import atlas
    atlas(imgs, net, stages="conv1", k=2, batch=2, out=root / "out", progress=False)
    return root / "out"


def test_atlas_pages_are_served_with_their_policy_and_linked(atlas_dir):
    client = TestClient(create_app(atlases={"digits": atlas_dir}))
    info = client.get("/api/info").json()
    assert info["atlases"] == [{"id": "a1", "label": "digits"}]
    index = client.get("/atlas/a1/")
    assert index.status_code == 200 and index.text == (atlas_dir / "index.html").read_text()
    from convlens.report import security
    assert index.headers["content-security-policy"] == security.page_policy(index.text)
    assert index.headers["x-content-type-options"] == "nosniff"
    page = client.get("/atlas/a1/conv1.html")
    assert page.status_code == 200 and "conv1" in page.text
    crops = sorted(p.relative_to(atlas_dir) for p in (atlas_dir / "crops").rglob("*.png"))
    assert crops
    got = client.get(f"/atlas/a1/{crops[0].as_posix()}")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.content == (atlas_dir / crops[0]).read_bytes()


def test_nothing_outside_the_atlas_folder_is_served(atlas_dir, tmp_path):
    secret = atlas_dir.parent / "secret.png"
    secret.write_bytes(b"\x89PNG not yours")
    (atlas_dir / "crops" / "link.png").unlink(missing_ok=True)
    (atlas_dir / "crops" / "link.png").symlink_to(secret)
    client = TestClient(create_app(atlases=[atlas_dir]))
    for path in ("/atlas/a1/../secret.png", "/atlas/a1/%2e%2e/secret.png",
                 "/atlas/a1/crops/link.png", "/atlas/a1/atlas-state.npz", "/atlas/a2/",
                 "/atlas/a1/crops/..%2fsecret.png"):
        r = client.get(path)
        assert r.status_code == 404 and b"not yours" not in r.content, path
    (atlas_dir / "crops" / "link.png").unlink()
    with pytest.raises(convlens.ConvlensError, match="not an atlas folder"):
        create_app(atlases=[tmp_path])


def test_a_crash_is_a_one_line_500_with_the_security_headers(monkeypatch):
    from convlens.report import security
    from convlens.server import state as S

    app = create_app()

    def boom(self, *a, **k):
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(S.ExplorerState, "image", boom)
    client = TestClient(app, raise_server_exceptions=False)
    r = client.post("/api/traces", json={"image": "cat", "model": "toy",
                                         "spec": "conv(2, 3x3)", "seed": 0})
    assert r.status_code == 500
    assert r.json()["error"]["message"] == "internal error: kaboom second line"
    for k, v in security.HEADERS.items():
        assert r.headers[k] == v
    assert r.headers["content-security-policy"] == security.API_POLICY
