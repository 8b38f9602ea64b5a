"""How responsive the web viewer is: preview frames per second as a browser sees them, at each
preview height, on trained runs; and training steps per second with and without a browser
connected to `train-scene --viewer`.

    python benchmarks/viewer_speed.py preview RUN_DIR [RUN_DIR ...] [--heights 64 96 128 192 256] [--seconds 6]
    python benchmarks/viewer_speed.py training RUN_DIR [--seconds 30] [--rounds 2] [--share 0.25]

preview: the viewer serves each run (its render thread, as `view-scene` does); a websocket client
speaking viser's protocol turns the camera 2 degrees around the scene for every frame it gets back
and asks for the next at once, so a frame's time covers the render, JPEG encoding and the round
trip. The client's canvas has the training images' aspect. Also timed: the full-height render the
viewer sends once the camera stops (training resolution).

training: a fresh run with RUN_DIR's config (data and model) trains in this process, taking turns
for `--seconds` each: no viewer; the viewer open with a browser dragging the camera (a camera
message every 50 ms); the viewer open with the browser's camera still (it is re-rendered every few
seconds while training). Steps per second are wall-clock steps over each turn; the viewer renders
between steps within its share of the time (`--share`, as `train-scene --viewer-share`).

Writes benchmarks/results/viewer_speed_<mode>-<date>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dated, machine, median, write_json  # noqa: E402
from nerf.commands.view import load_photos  # noqa: E402
from nerf.inference.video import training_cameras  # noqa: E402
from nerf.runs.run_folder import load_run_config, load_trained_model, read_scene_json  # noqa: E402
from nerf.scene_rays import SceneInfo  # noqa: E402
from nerf.viewer.render import viser_from_c2w  # noqa: E402
from nerf.viewer.server import SceneViewer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def orbit_step(c2w: np.ndarray, centre: np.ndarray, up: np.ndarray, degrees: float) -> np.ndarray:
    """c2w turned by `degrees` about the axis `up` through `centre`."""
    a = math.radians(degrees)
    k = up / np.linalg.norm(up)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    r = np.eye(3) + math.sin(a) * kx + (1 - math.cos(a)) * kx @ kx
    out = c2w.copy()
    out[:3, :3] = r @ c2w[:3, :3]
    out[:3, 3] = r @ (c2w[:3, 3] - centre) + centre
    return out


class Browser:
    """A websocket client that reports cameras and reads back the viewer's images (viser's wire format)."""

    def __init__(self, ws):
        self.ws = ws

    async def look(self, c2w: np.ndarray, fov: float, width: int, height: int) -> None:
        import msgspec
        from viser import _messages

        wxyz, pos = viser_from_c2w(c2w)
        msg = _messages.ViewerCameraMessage(
            wxyz=tuple(float(x) for x in wxyz), position=tuple(float(x) for x in pos), fov=fov, near=0.01, far=1e3,
            image_height=height, image_width=width, look_at=(0.0, 0.0, 0.0), up_direction=(0.0, 0.0, 1.0))
        await self.ws.send(msgspec.msgpack.encode(msg.as_serializable_dict()))

    async def next_image(self, timeout: float = 120.0) -> tuple[str, int, int]:
        """(format, byte size, height) of the next background image (decoded, as a page does)."""
        import imageio.v3 as iio
        import msgspec
        import zstandard

        end = time.monotonic() + timeout
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout=max(end - time.monotonic(), 0.01))
            n_inner, n_comp = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
            inner = zstandard.ZstdDecompressor().decompress(raw[16:16 + n_comp], max_output_size=n_inner)
            for m in msgspec.msgpack.decode(inner)["messages"]:
                if m.get("type") == "BackgroundImageMessage" and m.get("rgb_data") is not None:
                    return m["format"], len(m["rgb_data"]), iio.imread(bytes(m["rgb_data"])).shape[0]


def connect(port: int):
    import viser
    import websockets

    return websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"], max_size=None)


def preview(a) -> dict:
    rows = []
    for run in a.runs:
        run_dir = Path(run)
        cfg = load_run_config(run_dir)
        model, step, scene_json = load_trained_model(run_dir, cfg, torch.device("cpu"))
        cams = training_cameras(scene_json, run_dir)
        photos, names = load_photos(cfg, len(cams), print)
        viewer = SceneViewer(model, SceneInfo(**scene_json["info"]), cams, run_dir, cfg.render.chunk,
                             port=free_port(), photos=photos, image_names=names, log=print).start()
        fov = viewer.train_fov
        w, h = cams.width, cams.height
        start = viewer.train_c2w[0]

        async def browse():
            out = []
            async with connect(viewer.port) as ws:
                b = Browser(ws)
                c2w = start
                await b.look(c2w, fov, w, h)
                await b.next_image()
                v = viewer.views_seen[-1]
                v.gui["full"].value = h
                for height in a.heights:
                    v.gui["preview"].value = height
                    await asyncio.sleep(0.5)
                    times, sizes = [], []
                    t_end = time.perf_counter() + a.seconds
                    while time.perf_counter() < t_end or len(times) < 3:
                        c2w = orbit_step(c2w, viewer.centre, viewer.up, 2.0)
                        t0 = time.perf_counter()
                        await b.look(c2w, fov, w, h)
                        while True:  # a full-height frame of an earlier, still camera may still arrive
                            fmt, size, rows = await b.next_image()
                            if fmt == "jpeg" and rows == height:
                                break
                        times.append(time.perf_counter() - t0)
                        sizes.append(size)
                    out.append({"run": str(run_dir), "scene": scene_json.get("name"), "step": step,
                                "train_size": [w, h], "preview_height": height,
                                "preview_size": list(v.last_image.shape[1::-1]), "frames": len(times),
                                "fps": len(times) / sum(times), "median_ms": 1000 * median(times),
                                "jpeg_kb": float(np.mean(sizes)) / 1024})
                    print(f"{run_dir.name}: preview {out[-1]['preview_size'][0]}x{out[-1]['preview_size'][1]}: "
                          f"{out[-1]['fps']:.1f} fps (median {out[-1]['median_ms']:.0f} ms, {len(times)} frames)")
                # still: the full-height render at the training size, three times
                fulls = []
                for _ in range(3):
                    c2w = orbit_step(c2w, viewer.centre, viewer.up, 5.0)
                    t0 = time.perf_counter()
                    await b.look(c2w, fov, w, h)
                    while (await b.next_image())[0] != "png":
                        pass
                    fulls.append(time.perf_counter() - t0)
                fh, fw = v.last_image.shape[:2]
                out.append({"run": str(run_dir), "scene": scene_json.get("name"), "step": step, "train_size": [w, h],
                            "full_size": [fw, fh], "full_seconds_median": median(fulls), "full_seconds": fulls})
                print(f"{run_dir.name}: camera stops -> full {fw}x{fh} shown after {median(fulls):.2f} s "
                      f"(median of 3, includes the {1000 * 0.25:.0f} ms wait for stillness)")
            return out

        rows += asyncio.run(browse())
        viewer.close()
    return {"rows": rows}


def training(a) -> dict:
    from nerf.training.trainer import Trainer

    src = Path(a.runs[0])
    cfg = load_run_config(src, ["train.max_minutes=600", "train.max_steps=1000000", "train.eval_every=0",
                                "train.checkpoint_every=1000000", f"train.threads={a.threads}"])
    out_dir = Path(tempfile.mkdtemp(prefix="viewer-speed-"))
    try:
        trainer = Trainer(cfg, out_dir / "run", torch.device("cpu"), log=print, show_progress=False)
        for _ in range(20):  # warm-up: the occupancy grid settles, allocations are made
            trainer.train_step()
        viewer = SceneViewer(trainer.model, trainer.info, training_cameras(read_scene_json(trainer.run_dir)),
                             trainer.run_dir, cfg.render.chunk, port=free_port(), live=True, share=a.share, log=print)
        h, w = trainer.cameras.height, trainer.cameras.width
        state = {"mode": "off", "stop": False}

        def client():
            async def run():
                async with connect(viewer.port) as ws:
                    b = Browser(ws)
                    c2w = viewer.train_c2w[0]
                    await b.look(c2w, viewer.train_fov, w, h)
                    while not state["stop"]:
                        if state["mode"] == "moving":
                            c2w = orbit_step(c2w, viewer.centre, viewer.up, 1.0)
                            await b.look(c2w, viewer.train_fov, w, h)
                        try:  # drain what the viewer sent
                            await asyncio.wait_for(b.ws.recv(), timeout=0.05)
                        except asyncio.TimeoutError:
                            pass
            asyncio.run(run())

        thread = None
        rows = []
        turns = ["none", "moving", "still"] * a.rounds
        for mode in turns:
            if mode == "none":
                trainer.on_step = []
            else:
                trainer.on_step = [viewer.poll]
                if thread is None:
                    thread = threading.Thread(target=client, daemon=True)
                    thread.start()
                    time.sleep(2.0)
            state["mode"] = mode
            rendered0, frames0 = viewer.render_seconds, sum(v.frames_sent for v in viewer.views_seen)
            step0, t0 = trainer.step, time.perf_counter()
            while time.perf_counter() - t0 < a.seconds:
                trainer.train_step()
                for hook in trainer.on_step:
                    hook(trainer)
            dt = time.perf_counter() - t0
            frames = sum(v.frames_sent for v in viewer.views_seen) - frames0
            rows.append({"viewer": mode, "steps": trainer.step - step0, "seconds": dt,
                         "steps_per_s": (trainer.step - step0) / dt, "frames_sent": frames,
                         "render_share": (viewer.render_seconds - rendered0) / dt})
            print(f"viewer {mode:6s}: {rows[-1]['steps_per_s']:.2f} steps/s, {frames} frames sent, "
                  f"{rows[-1]['render_share']:.0%} of the time rendering")
        state["stop"] = True
        if thread is not None:
            thread.join(timeout=10)
        viewer.close()
        summary = {}
        for mode in ("none", "moving", "still"):
            sps = [r["steps_per_s"] for r in rows if r["viewer"] == mode]
            summary[mode] = {"steps_per_s_median": median(sps), "turns": len(sps)}
        return {"source_run": str(src), "size": [w, h], "share": a.share, "rows": rows, "summary": summary,
                "config": {"method": cfg.model.method, "batch_rays": cfg.train.batch_rays,
                           "data": dataclasses.asdict(cfg.data)}}
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["preview", "training"])
    ap.add_argument("runs", nargs="+", help="run folders written by train-scene")
    ap.add_argument("--heights", type=int, nargs="+", default=[64, 96, 128, 192, 256], help="preview heights")
    ap.add_argument("--seconds", type=float, default=None, help="per height (preview, default 6) or per turn "
                                                                "(training, default 30)")
    ap.add_argument("--rounds", type=int, default=2, help="training: rounds of the three turns")
    ap.add_argument("--share", type=float, default=0.25, help="training: the viewer's share of the time")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.seconds = a.seconds or (6.0 if a.mode == "preview" else 30.0)
    info = machine()
    result = preview(a) if a.mode == "preview" else training(a)
    result.update({"machine": info, "args": vars(a), "load_avg_1min_end": os.getloadavg()[0]})
    path = dated(f"viewer_speed_{a.mode}", "json")
    write_json(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
