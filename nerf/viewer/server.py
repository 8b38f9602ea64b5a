"""The viewer server: a viser page that shows the scene rendered at each browser's camera.

Every new view of a camera is first rendered at the preview height (fast, blurry); once the
camera has stood still for `STILL_SECONDS` the full-height render replaces it, and a render that a new move
makes stale is dropped between chunks. Each browser has its own controls (output, heights, the
camera path it is drawing); browsers may come and go at any time.

Rendering happens in one place at a time, never beside training: `view-scene` runs a render
thread (`start`), `train-scene --viewer` calls `poll` between steps and renders only while the
time spent rendering stays under its share of the wall clock.
"""
from __future__ import annotations

import contextlib
import io
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nerf.datasets.scene import Cameras
from nerf.errors import UserError
from nerf.inference.video import frames_for
from nerf.render.camera_path import interpolate_path, write_camera_path
from nerf.render.video import to_uint8
from nerf.scene_rays import SceneInfo
from nerf.viewer.render import browser_camera, c2w_from_viser, render_camera, to_display, viser_from_c2w

STILL_SECONDS = 0.25  # a camera unmoved this long gets the full-height render
LIVE_REFRESH_SECONDS = 2.0  # while training, a still view is re-rendered this often (the scene changes)
OUTPUTS = ("rgb", "depth", "opacity")


def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not listen on host:port now (as the viewer's server would bind it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError(f"--host {host}: not an address of this machine") from None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError:
                return True
    return False


def check_port(host: str, port: int, flag: str = "--port") -> None:
    """A one-line error naming a free port nearby when host:port is taken."""
    if not 0 < port < 65536:
        raise UserError(f"{flag}: must be between 1 and 65535, got {port}")
    if port_in_use(host, port):
        free = next((p for p in range(port + 1, min(port + 100, 65536)) if not port_in_use(host, p)), None)
        hint = f"; try {flag} {free}" if free else ""
        raise UserError(f"{flag} {port}: port {port} on {host} is already in use (another viewer?){hint}")


@dataclass
class ViewState:
    """One browser: its latest camera, what was last shown, its controls and camera path."""

    client: object
    version: int = 0  # bumped by every change of camera or settings
    moved_at: float = 0.0
    camera: tuple | None = None  # (c2w (4, 4) OpenGL, fov radians, aspect)
    shown_version: int = -1  # the version of the last preview sent
    refined_version: int = -1  # the version of the last full-height render sent
    refined_at: float = 0.0
    last_image: np.ndarray | None = None  # the last image sent (tests, benchmarks)
    last_full: bool = False
    frames_sent: int = 0
    gui: dict = field(default_factory=dict)
    keyframes: list = field(default_factory=list)  # [(c2w (4, 4), fov degrees)]
    playing: bool = False


class SceneViewer:
    """A viser server on host:port showing `model`; cameras: the training cameras (drawn as
    frustums with `photos` (n, H, W, 3) on them when given); run_dir: where camera paths are saved.
    live: the model is training (its views are refreshed while still)."""

    def __init__(self, model, info: SceneInfo, cameras: Cameras, run_dir: Path, chunk: int = 8192,
                 host: str = "127.0.0.1", port: int = 8080, photos: torch.Tensor | None = None,
                 image_names: list[str] | None = None, live: bool = False, share: float = 1.0, log=print):
        import viser

        check_port(host, port)
        self.model, self.info, self.cameras, self.run_dir = model, info, cameras, Path(run_dir)
        self.chunk, self.live, self.share, self.log = chunk, live, share, log
        self.photos, self.image_names = photos, image_names
        self.device = next(model.parameters()).device
        self.views: dict[int, ViewState] = {}  # the browsers connected now
        self.views_seen: list[ViewState] = []  # every browser that connected (tests, benchmarks)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.step: int | None = None
        self.render_seconds, self.started = 0.0, time.perf_counter()
        self.forfeited = 0.0  # rendering time left unused beyond the banked window (see `poll`)
        self._thread: threading.Thread | None = None
        self._next = 0
        with contextlib.redirect_stdout(io.StringIO()):  # viser's banner: the command prints its own URL
            self.server = viser.ViserServer(host=host, port=port, verbose=False)
        if self.server.get_port() != port:  # taken between the check and the bind
            self.server.stop()
            raise UserError(f"--port {port}: port {port} on {host} is already in use; try --port {self.server.get_port()}")
        self.host, self.port = host, port
        self._scene_facts()
        self._draw_scene()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    # --- the scene ---------------------------------------------------------------------------------

    def _scene_facts(self) -> None:
        c2w = self.cameras.c2w.double().cpu().numpy()
        self.train_c2w = c2w
        self.up = c2w[:, :3, 1].mean(0)
        self.up /= max(np.linalg.norm(self.up), 1e-9)
        bbox = np.asarray(self.info.bbox, dtype=np.float64)
        self.centre = bbox.mean(0) if not self.info.ndc else c2w[:, :3, 3].mean(0)
        spread = np.linalg.norm(c2w[:, :3, 3] - self.centre, axis=1)
        self.frustum_scale = 0.08 * float(np.median(spread)) if len(c2w) > 1 and np.median(spread) > 0 else 0.1
        self.train_fov = 2.0 * math.atan(0.5 * self.cameras.height / float(self.cameras.fy[0]))
        self.train_aspect = self.cameras.width / self.cameras.height

    def _draw_scene(self) -> None:
        scene = self.server.scene
        scene.set_up_direction(tuple(self.up))
        cam = self.server.initial_camera
        first = self.train_c2w[0]
        dist = float(np.linalg.norm(first[:3, 3] - self.centre)) or 1.0
        cam.position = tuple(first[:3, 3])
        cam.look_at = tuple(first[:3, 3] - first[:3, 2] * dist)
        cam.up = tuple(self.up)
        cam.fov = self.train_fov
        if not self.info.ndc:  # an NDC scene's box is in NDC space, not the world's
            lo, hi = np.asarray(self.info.bbox, dtype=np.float64)
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
            scene.add_line_segments("/scene_box", np.stack([corners[[a, b]] for a, b in edges]).astype(np.float32),
                                    colors=(230, 120, 20), thickness=2.0, thickness_units="screen")
        self.frustums = []
        thumbs = self._thumbnails(96)
        for i, m in enumerate(self.train_c2w):
            wxyz, pos = viser_from_c2w(m)
            h = scene.add_camera_frustum(f"/training_cameras/{i:04d}", fov=self.train_fov, aspect=self.train_aspect,
                                         scale=self.frustum_scale, thickness=1.5, thickness_units="screen",
                                         color=(60, 90, 200), image=None if thumbs is None else thumbs[i],
                                         wxyz=wxyz, position=pos)
            h.on_click(lambda event, i=i: self._jump_to(event.client, i))
            self.frustums.append(h)

    def _thumbnails(self, width: int) -> list[np.ndarray] | None:
        if self.photos is None or len(self.photos) != len(self.train_c2w):
            return None
        step = max(int(self.photos.shape[2] // width), 1)
        return [to_uint8(p[::step, ::step]) for p in self.photos]

    def _jump_to(self, client, i: int) -> None:
        """Put a browser's camera on training camera i and show its photo."""
        m = self.train_c2w[i]
        dist = float(np.linalg.norm(m[:3, 3] - self.centre)) or 1.0
        with client.atomic():
            client.camera.fov = self.train_fov
            client.camera.position = tuple(m[:3, 3])
            client.camera.up_direction = tuple(m[:3, 1])
            client.camera.look_at = tuple(m[:3, 3] - m[:3, 2] * dist)
        v = self.views.get(client.client_id)
        if v is not None and self.photos is not None and i < len(self.photos):
            step = max(int(self.photos.shape[2] // 480), 1)
            v.gui["photo"].image = to_uint8(self.photos[i][::step, ::step])
            v.gui["photo"].visible = True
            name = self.image_names[i] if self.image_names and i < len(self.image_names) else str(i)
            v.gui["photo_name"].content = f"Training photo **{name}** (camera {i})"

    # --- browsers ----------------------------------------------------------------------------------

    def _connect(self, client) -> None:
        v = ViewState(client=client, moved_at=time.perf_counter())
        with self.lock:
            self.views[client.client_id] = v
            self.views_seen.append(v)
        self._build_gui(v)
        client.camera.on_update(lambda cam: self._camera_moved(v, cam))
        try:
            self._camera_moved(v, client.camera)
        except AssertionError:  # no camera message yet
            pass

    def _disconnect(self, client) -> None:
        with self.lock:
            v = self.views.pop(client.client_id, None)
        if v is not None:
            v.playing = False

    def _camera_moved(self, v: ViewState, cam) -> None:
        aspect = cam.image_width / cam.image_height if cam.image_height else self.train_aspect
        c2w = c2w_from_viser(cam.wxyz, cam.position)
        with self.lock:
            v.camera = (c2w, float(cam.fov), float(aspect))
            v.version += 1
            v.moved_at = time.perf_counter()
        self.wake.set()

    def _changed(self, v: ViewState) -> None:
        with self.lock:
            v.version += 1
            v.moved_at = time.perf_counter() - STILL_SECONDS  # a setting, not a move: refine at once
        self.wake.set()

    def _build_gui(self, v: ViewState) -> None:
        gui, g = v.client.gui, v.gui
        h = self.cameras.height
        with gui.add_folder("View"):
            g["output"] = gui.add_dropdown("Output", OUTPUTS, initial_value="rgb")
            g["preview"] = gui.add_slider("Preview height", min=32, max=512, step=16, initial_value=min(128, max(32, h)),
                                          hint="rows rendered while the camera moves")
            g["full"] = gui.add_slider("Full height", min=64, max=max(2048, 2 * h), step=16,
                                       initial_value=max(64, min(h, 2 * 1024)),
                                       hint="rows rendered once the camera stops")
            g["stats"] = gui.add_markdown("")
        for key in ("output", "preview", "full"):
            g[key].on_update(lambda _e: self._changed(v))
        with gui.add_folder("Training cameras"):
            g["show_cameras"] = gui.add_checkbox("Show cameras", True)
            g["photo_name"] = gui.add_markdown("Click a camera to look through it.")
            g["photo"] = gui.add_image(np.zeros((8, 8, 3), np.uint8), label="photo", visible=False)
        g["show_cameras"].on_update(lambda _e: self._show_cameras(g["show_cameras"].value))
        with gui.add_folder("Camera path"):
            g["add"] = gui.add_button("Add keyframe", hint="the current view becomes the next keyframe")
            g["undo"] = gui.add_button("Remove last keyframe")
            g["clear"] = gui.add_button("Clear keyframes")
            g["seconds"] = gui.add_number("Duration (s)", 4.0, min=0.1, max=600.0, step=0.1)
            g["fps"] = gui.add_number("FPS", 30.0, min=1.0, max=240.0, step=1.0)
            g["loop"] = gui.add_checkbox("Loop", False)
            g["time"] = gui.add_slider("Preview time", min=0.0, max=1.0, step=0.001, initial_value=0.0)
            g["play"] = gui.add_button("Play")
            g["file"] = gui.add_text("File", "camera_path.json", hint=f"saved in {self.run_dir / 'camera_paths'}")
            g["save"] = gui.add_button("Save camera path")
            g["path_info"] = gui.add_markdown("No keyframes.")
        g["add"].on_click(lambda _e: self.add_keyframe(v))
        g["undo"].on_click(lambda _e: self._edit_keys(v, v.keyframes[:-1]))
        g["clear"].on_click(lambda _e: self._edit_keys(v, []))
        g["loop"].on_update(lambda _e: self._draw_path(v))
        g["time"].on_update(lambda _e: self._preview_at(v, g["time"].value))
        g["play"].on_click(lambda _e: self._play(v))
        g["save"].on_click(lambda _e: self._save_from_gui(v))

    def _show_cameras(self, visible: bool) -> None:
        for h in self.frustums:
            h.visible = visible

    # --- camera paths ------------------------------------------------------------------------------

    def add_keyframe(self, v: ViewState) -> None:
        """The browser's current view becomes the next keyframe."""
        if v.camera is None:
            return
        c2w, fov, _ = v.camera
        self._edit_keys(v, v.keyframes + [(c2w.copy(), math.degrees(fov))])

    def _edit_keys(self, v: ViewState, keys: list) -> None:
        v.keyframes = list(keys)
        self._draw_path(v)

    def path_frames(self, v: ViewState) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The frames (n, 4, 4) and fov (n,) in degrees of a browser's camera path, or None."""
        if not v.keyframes:
            return None
        n = frames_for(float(v.gui["seconds"].value), float(v.gui["fps"].value))
        keys = np.stack([k for k, _ in v.keyframes])
        return interpolate_path(keys, n, bool(v.gui["loop"].value), fov=[f for _, f in v.keyframes])

    def _draw_path(self, v: ViewState) -> None:
        scene = v.client.scene
        scene.remove_by_name("/camera_path")
        for i, (m, fov) in enumerate(v.keyframes):
            wxyz, pos = viser_from_c2w(m)
            scene.add_camera_frustum(f"/camera_path/key_{i:03d}", fov=math.radians(fov), aspect=self.train_aspect,
                                     scale=self.frustum_scale * 1.2, thickness=2.5, thickness_units="screen",
                                     color=(220, 40, 40), wxyz=wxyz, position=pos)
        info = "No keyframes." if not v.keyframes else f"{len(v.keyframes)} keyframe(s)"
        frames = self.path_frames(v) if len(v.keyframes) > 1 else None
        if frames is not None:
            pts = frames[0][:, :3, 3].numpy()
            if v.gui["loop"].value:
                pts = np.concatenate([pts, pts[:1]])
            seg = np.stack([pts[:-1], pts[1:]], 1).astype(np.float32)
            scene.add_line_segments("/camera_path/line", seg, colors=(220, 40, 40), thickness=2.0,
                                    thickness_units="screen")
            info += f", {len(frames[0])} frames"
        v.gui["path_info"].content = info

    def _preview_at(self, v: ViewState, t: float) -> None:
        """Move a browser's camera to time t (0..1) of its path."""
        frames = self.path_frames(v)
        if frames is None:
            return
        c2w, fov = frames
        i = min(int(round(t * (len(c2w) - 1))), len(c2w) - 1)
        m = c2w[i].double().numpy()
        with v.client.atomic():
            v.client.camera.fov = math.radians(float(fov[i]))
            v.client.camera.position = tuple(m[:3, 3])
            v.client.camera.up_direction = tuple(m[:3, 1])
            v.client.camera.look_at = tuple(m[:3, 3] - m[:3, 2])

    def _play(self, v: ViewState) -> None:
        """Run the preview time from 0 to 1 over the path's duration (renders at preview height)."""
        if v.playing or not v.keyframes:
            return
        v.playing = True
        seconds = float(v.gui["seconds"].value)
        start = time.perf_counter()
        try:
            while v.playing and not self.stopped.is_set():
                t = min((time.perf_counter() - start) / seconds, 1.0)
                v.gui["time"].value = t
                if t >= 1.0:
                    break
                time.sleep(0.1)
        finally:
            v.playing = False

    def save_camera_path(self, v: ViewState, name: str = "camera_path.json") -> Path:
        """Write a browser's camera path as nerfstudio's camera_path.json in RUN_DIR/camera_paths/,
        at the training image size."""
        frames = self.path_frames(v)
        if frames is None:
            raise UserError("no keyframes to save")
        name = Path(name).name or "camera_path.json"
        if not name.endswith(".json"):
            name += ".json"
        keys = np.stack([k for k, _ in v.keyframes])
        path = write_camera_path(self.run_dir / "camera_paths" / name, frames[0], frames[1], self.cameras.width,
                                 self.cameras.height, float(v.gui["fps"].value), keyframes=keys,
                                 keyframe_fov=[f for _, f in v.keyframes], is_cycle=bool(v.gui["loop"].value))
        return path

    def _save_from_gui(self, v: ViewState) -> None:
        try:
            path = self.save_camera_path(v, v.gui["file"].value)
        except (UserError, OSError) as exc:
            v.gui["path_info"].content = f"Not saved: {exc}"
            return
        cmd = f"render-video {self.run_dir} --camera-path {path}"
        v.gui["path_info"].content = f"Saved {path}. Render it with `{cmd}`"
        self.log(f"view-scene: saved {path}; render it with: {cmd}")

    # --- rendering ---------------------------------------------------------------------------------

    def _next_job(self) -> tuple[ViewState, int, bool] | None:
        """The next view to render, round robin over browsers: (view, its version, full height?)."""
        now = time.perf_counter()
        with self.lock:
            views = list(self.views.values())
        if not views:
            return None
        for k in range(len(views)):
            v = views[(self._next + k) % len(views)]
            if v.camera is None:
                continue
            still = now - v.moved_at >= STILL_SECONDS
            if v.shown_version != v.version:  # a view not shown yet: the quick preview first, whatever came before
                job = (v, v.version, False)
            elif still and (v.refined_version != v.version
                            or (self.live and now - v.refined_at >= LIVE_REFRESH_SECONDS)):
                job = (v, v.version, True)
            else:
                continue
            self._next = (self._next + k + 1) % len(views)
            return job
        return None

    def render_for(self, v: ViewState, version: int, full: bool) -> bool:
        """Render one view and send it to its browser; False if it went stale before it was done."""
        c2w, fov, aspect = v.camera
        g = v.gui
        height = int(g["full"].value if full else g["preview"].value)
        output = g["output"].value
        cams = browser_camera(c2w, fov, aspect, height, self.device)
        t0 = time.perf_counter()
        out = render_camera(self.model, cams, self.info, self.chunk, self.cameras,
                            should_stop=lambda: v.version != version or self.stopped.is_set())
        dt = time.perf_counter() - t0
        self.render_seconds += dt
        if out is None:
            return False
        img = to_display(out, output, self.info)
        v.client.scene.set_background_image(img, format="png" if full else "jpeg", jpeg_quality=85)
        v.last_image, v.last_full = img, full
        v.frames_sent += 1
        v.shown_version = version
        if full:
            v.refined_version, v.refined_at = version, time.perf_counter()
        step = f", step {self.step}" if self.step is not None else ""
        g["stats"].content = f"{'full' if full else 'preview'} {img.shape[1]}x{img.shape[0]}: {dt * 1000:.0f} ms{step}"
        return True

    def render_pending(self) -> bool:
        """Render the next view that needs it, if any; whether one was rendered."""
        job = self._next_job()
        if job is None:
            return False
        try:
            self.render_for(*job)
        except Exception as exc:  # a browser that left mid-frame, or a bad setting: keep serving
            self.log(f"view-scene: a frame failed ({type(exc).__name__}: {exc})")
        return True

    def start(self) -> "SceneViewer":
        """Render in a background thread (a trained run, nothing else using the model)."""
        def loop():
            while not self.stopped.is_set():
                if not self.render_pending():
                    self.wake.wait(0.05)
                    self.wake.clear()
        self._thread = threading.Thread(target=loop, name="viewer-render", daemon=True)
        self._thread.start()
        return self

    SHARE_WINDOW = 5.0  # seconds of unused rendering time the viewer may bank (times its share)

    def poll(self, trainer=None) -> None:
        """Between training steps: render one pending view while rendering has used less than
        `share` of the wall clock since the viewer started; time left unused while nobody watched
        counts for at most SHARE_WINDOW seconds, so a browser that connects late does not take
        the whole CPU until it has spent the credit of the whole run."""
        if trainer is not None:
            self.step = trainer.step
        allowed = self.share * (time.perf_counter() - self.started)
        self.forfeited = max(self.forfeited, allowed - self.share * self.SHARE_WINDOW - self.render_seconds)
        if not self.views or self.render_seconds + self.forfeited > allowed:
            return
        self.render_pending()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self.stopped.set()
        self.wake.set()
        for v in list(self.views.values()):
            v.playing = False
        if self._thread is not None:
            self._thread.join(timeout=10)
        with contextlib.redirect_stdout(io.StringIO()):
            self.server.stop()
