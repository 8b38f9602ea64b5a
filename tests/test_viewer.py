"""The web viewer: a browser's camera gets the render_view image at that camera, keyframes saved as
camera_path.json render through render-video --camera-path, browsers come and go, bad ports and
run folders are one line, train-scene --viewer serves the run while it trains, and a real browser
(headless Chromium) shows the rendered scene.

The websocket client speaks viser's wire format as its page does: msgpack messages from the
browser, zstd-compressed msgpack windows back (viser's infra/_infra.py documents the layout).
"""
import asyncio
import base64
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import imageio.v2 as iio2
import imageio.v3 as iio
import msgspec
import numpy as np
import pytest
import torch
import viser
import websockets
import zstandard
from conftest import installed_script
from viser import _messages

from nerf.commands import COMMANDS
from nerf.inference.video import training_cameras
from nerf.inference.views import render_view
from nerf.render.camera_path import read_camera_path
from nerf.render.video import to_uint8
from nerf.runs.run_folder import load_run_config, load_trained_model
from nerf.scene_rays import SceneInfo
from nerf.viewer.render import browser_camera, viser_from_c2w
from nerf.viewer.server import SceneViewer

TINY_FAST = ["data.synthetic.resolution=32", "data.synthetic.n_train=8", "data.synthetic.n_test=2",
             "model.fast.grid_res=48", "model.fast.occ_res=48", "model.fast.steps=96", "train.batch_rays=1024",
             "train.max_steps=40", "train.eval_every=0", "train.checkpoint_every=40",
             "train.max_minutes=0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("viewer") / "run"
    code = COMMANDS["train-scene"](["--out", str(run), "--seed", "1", "--quiet", "--no-eval", "--no-showcase", *TINY_FAST])
    assert code == 0
    return run


@pytest.fixture
def viewer(tiny_run):
    cfg = load_run_config(tiny_run)
    model, _, scene_json = load_trained_model(tiny_run, cfg, torch.device("cpu"))
    v = SceneViewer(model, SceneInfo(**scene_json["info"]), training_cameras(scene_json, tiny_run), tiny_run,
                    chunk=4096, port=free_port(), log=lambda *a: None).start()
    yield v
    v.close()


def _windows(raw: bytes) -> list[dict]:
    """The messages of one window the server sent."""
    n_inner, n_comp = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
    inner = zstandard.ZstdDecompressor().decompress(raw[16:16 + n_comp], max_output_size=n_inner)
    return msgspec.msgpack.decode(inner)["messages"]


class Browser:
    """A websocket client standing in for the page: it reports a camera and collects the
    background images the server sends back."""

    def __init__(self, ws):
        self.ws = ws

    async def look(self, c2w: np.ndarray, fov: float, width: int, height: int) -> None:
        wxyz, pos = viser_from_c2w(c2w)
        msg = _messages.ViewerCameraMessage(
            wxyz=tuple(float(x) for x in wxyz), position=tuple(float(x) for x in pos), fov=fov, near=0.01,
            far=100.0, image_height=height, image_width=width, look_at=(0.0, 0.0, 0.0), up_direction=(0.0, 0.0, 1.0))
        await self.ws.send(msgspec.msgpack.encode(msg.as_serializable_dict()))

    async def images(self, until_full: bool = True, timeout: float = 60.0) -> list[tuple[str, np.ndarray]]:
        """Background images received, up to the first full-height (PNG) one."""
        got, end = [], time.monotonic() + timeout
        while time.monotonic() < end:
            raw = await asyncio.wait_for(self.ws.recv(), timeout=end - time.monotonic())
            for m in _windows(raw):
                if m.get("type") == "BackgroundImageMessage" and m.get("rgb_data") is not None:
                    got.append((m["format"], iio.imread(bytes(m["rgb_data"]))))
                    if m["format"] == "png" or not until_full:
                        return got
        raise AssertionError(f"no full-height image within {timeout} s (got {len(got)} previews)")


def connect(port: int):
    return websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"], max_size=None)


def test_a_browser_camera_gets_render_view_at_that_camera(viewer, tiny_run):
    cams = viewer.cameras
    c2w = cams.c2w[3].double().numpy()
    fov = 0.8

    async def browse():
        async with connect(viewer.port) as ws:
            b = Browser(ws)
            await b.look(c2w, fov, 300, 200)
            return await b.images()

    imgs = asyncio.run(browse())
    (fmt0, first), (fmt, full) = imgs[0], imgs[-1]
    preview_h, full_h = (int(viewer.views_seen[-1].gui[k].value) for k in ("preview", "full"))
    assert fmt0 == "jpeg" and first.shape == (preview_h, round(preview_h * 1.5), 3)
    assert fmt == "png" and full.shape == (full_h, round(full_h * 1.5), 3)
    ref = render_view(viewer.model, browser_camera(c2w, fov, 1.5, full_h), 0, viewer.info, 4096)
    diff = np.abs(full.astype(int) - to_uint8(ref["rgb"]).astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.05  # lossless PNG of the same render, rounding aside
    assert to_uint8(ref["rgb"]).std() > 5  # the scene, not a blank frame
    deadline = time.monotonic() + 10
    while viewer.views and time.monotonic() < deadline:  # the browser left: its state goes with it
        time.sleep(0.05)
    assert viewer.views == {}


def test_keyframes_saved_render_through_render_video(viewer, tiny_run):
    train = viewer.cameras.c2w.double().numpy()

    async def browse():
        async with connect(viewer.port) as ws:
            b = Browser(ws)
            for i in (0, 2, 5):  # three keyframes from three views
                await b.look(train[i], 0.7, 160, 120)
                await b.images(until_full=False)
                v = viewer.views_seen[-1]
                deadline = time.monotonic() + 10
                while (v.camera is None or np.abs(v.camera[0] - train[i]).max() > 1e-5) and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                viewer.add_keyframe(v)
            v.gui["seconds"].value = 1.5
            v.gui["fps"].value = 4.0
            return viewer.save_camera_path(v, "three_keys")

    path = asyncio.run(browse())
    assert path == tiny_run / "camera_paths" / "three_keys.json"
    cp = read_camera_path(path)
    assert len(cp.c2w) == 6 and cp.fps == 4.0 and (cp.width, cp.height) == (32, 32)
    assert len(cp.keyframes[0]) == 3 and np.allclose(cp.keyframes[1].numpy(), math.degrees(0.7))
    assert np.abs(cp.c2w[0].double().numpy() - train[0]).max() < 1e-4
    assert np.abs(cp.c2w[-1].double().numpy() - train[5]).max() < 1e-4
    assert COMMANDS["render-video"]([str(tiny_run), "--camera-path", str(path), "--quiet"]) == 0
    for name in ("three_keys-rgb.mp4", "three_keys-depth.mp4"):
        frames = iio2.mimread(tiny_run / "videos" / name, memtest=False)
        assert len(frames) == 6 and frames[0].shape == (32, 32, 3)


def test_browsers_come_and_go(viewer):
    c2w = viewer.cameras.c2w[1].double().numpy()

    async def one(width):
        async with connect(viewer.port) as ws:
            b = Browser(ws)
            await b.look(c2w, 0.9, width, 100)
            return (await b.images(until_full=False))[0][1]

    async def together():
        return await asyncio.gather(one(100), one(200))

    a, b = asyncio.run(together())  # two at once, each its own size
    assert a.shape[1] / a.shape[0] == pytest.approx(1.0, abs=0.05)
    assert b.shape[1] / b.shape[0] == pytest.approx(2.0, abs=0.05)
    for _ in range(3):  # and again after both left
        img = asyncio.run(one(150))
        assert img.shape[1] / img.shape[0] == pytest.approx(1.5, abs=0.05)
    deadline = time.monotonic() + 10
    while viewer.views and time.monotonic() < deadline:
        time.sleep(0.05)
    assert viewer.views == {} and len(viewer.views_seen) == 5


def test_busy_port_and_missing_checkpoint_are_one_line(tiny_run, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code = COMMANDS["view-scene"]([str(tiny_run), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"--port {port}: port {port} on 127.0.0.1 is already in use" in err and "try --port " in err
    suggested = int(err.rsplit("try --port ", 1)[1])
    assert suggested > port
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.yaml", "scene.json"):
        shutil.copy(tiny_run / name, bare / name)
    code = COMMANDS["view-scene"]([str(bare), "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no readable checkpoint" in err


def test_train_scene_viewer_serves_the_run_while_it_trains(tmp_path):
    port = free_port()
    run = tmp_path / "live"
    proc = subprocess.Popen([str(installed_script("train-scene")), "--out", str(run), "--viewer", "--viewer-port",
                             str(port), "--viewer-share", "0.5", "--no-eval", "--no-showcase", "--quiet", *TINY_FAST,
                             "train.max_steps=100000", "train.checkpoint_every=100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.3)

        async def browse():
            async with connect(port) as ws:
                b = Browser(ws)
                train_c2w = np.array(json.loads((run / "scene.json").read_text())["train_c2w"][0])
                await b.look(train_c2w, 0.8, 120, 60)
                return await b.images(timeout=90)

        imgs = asyncio.run(browse())
        assert imgs[-1][0] == "png" and imgs[-1][1].shape == (64, 128, 3)  # full height: 32 rows -> the 64 minimum
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and (run / "checkpoints").is_dir()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


async def _cdp(ws, method: str, target: str | None = None, **params) -> dict:
    """One DevTools Protocol call; events arriving meanwhile are skipped."""
    _cdp.n = getattr(_cdp, "n", 0) + 1
    msg = {"id": _cdp.n, "method": method, "params": params}
    if target:
        msg["sessionId"] = target
    await ws.send(json.dumps(msg))
    while True:
        reply = json.loads(await ws.recv())
        if reply.get("id") == _cdp.n:
            assert "error" not in reply, reply
            return reply["result"]


def screenshot(url: str, wait_until, size=(800, 600), timeout: float = 90.0) -> np.ndarray:
    """Open `url` in headless Chromium (software WebGL), wait until `wait_until()` holds, and
    return a screenshot of the page (H, W, 3) uint8."""
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen(
        [_chromium(), "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "HOME": profile})
    try:
        deadline = time.monotonic() + timeout
        line = ""
        while "DevTools listening on" not in line:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "chromium exited before it listened"
            assert time.monotonic() < deadline, "chromium did not start"
        endpoint = line.split("DevTools listening on", 1)[1].strip()

        async def run():
            async with websockets.connect(endpoint, max_size=None) as ws:
                target = (await _cdp(ws, "Target.createTarget", url="about:blank"))["targetId"]
                page = (await _cdp(ws, "Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
                await _cdp(ws, "Emulation.setDeviceMetricsOverride", page, width=size[0], height=size[1],
                           deviceScaleFactor=1, mobile=False)
                await _cdp(ws, "Page.navigate", page, url=url)
                while not wait_until():
                    assert time.monotonic() < deadline, "the page never showed a full-height render"
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1.5)  # the last frame reaches the canvas
                shot = await _cdp(ws, "Page.captureScreenshot", page, format="png")
                return iio.imread(base64.b64decode(shot["data"]))

        return asyncio.run(run())[..., :3]
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (.ci/run installs Debian's chromium)")
def test_a_real_browser_shows_the_rendered_scene(viewer):
    """Headless Chromium opens the page; its WebGL canvas (software, SwiftShader) shows the render."""
    full_frames = []  # the full-height frames shown when the page settled

    def settled():
        done = [v for v in viewer.views_seen
                if v.last_full and v.refined_version == v.version and time.perf_counter() - v.refined_at > 0.5]
        full_frames.extend(v.last_image for v in done)
        return bool(done)

    page = screenshot(viewer.url, settled).astype(np.float64)
    assert page.shape[:2] == (600, 800)
    img = full_frames[-1]
    assert img.shape[0] == int(viewer.views_seen[-1].gui["full"].value)
    assert img.shape[1] / img.shape[0] == pytest.approx(800 / 600, abs=0.03)
    # the left of the page, below viser's notice and left of its panel: the render, stretched to the canvas
    region = (slice(160, 590), slice(60, 450))
    shown = page[region]
    assert shown.std() > 10  # not a blank page
    corr = 0.0
    for frame in [img] + [v.last_image for v in viewer.views_seen if v.last_image is not None]:  # a resize may follow
        up = torch.nn.functional.interpolate(torch.from_numpy(frame).permute(2, 0, 1)[None].double(), size=(600, 800),
                                             mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
        assert up[region].std() > 10  # the render shows the scene, not an empty frame
        corr = max(corr, float(np.corrcoef(up[region].ravel(), shown.ravel())[0, 1]))
    assert corr > 0.8, corr
