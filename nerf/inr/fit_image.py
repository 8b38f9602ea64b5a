"""Image regression with coordinate networks: f(x, y) -> RGB, the Fourier-features paper's 2D protocol.

The network trains on every other pixel in each direction (a quarter of the pixels, full batch,
Adam) and is scored by PSNR on the other three quarters, which it never saw; then it is rendered
at 1x, 2x and 4x the input resolution. Encodings compared: none (a plain ReLU MLP on (x, y)),
positional (NeRF's frequency encoding), gaussian (random Fourier features) and siren (a sine
network on the raw coordinates).

Coordinates: pixel (row i, column j) has its centre at (j + 0.5, i + 0.5); it maps to
((2 (j + 0.5) - W) / S, (2 (i + 0.5) - H) / S) with S = max(H, W), so the longer side spans
[-1, 1] and pixels are square. Gaussian sigma is in cycles per unit of these coordinates.

Output folder: metrics.json (keyed by encoding), table.md, comparison.png, settings.json and one
folder per encoding with its TensorBoard events and render_1x.png, render_2x.png, render_4x.png.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nerf.datasets.errors import DatasetError
from nerf.datasets.imageops import downscale_area, read_image
from nerf.errors import UserError
from nerf.fields.encodings import make_encoding
from nerf.fields.siren import Siren
from nerf.metrics import psnr, psnr_from_mse
from nerf.settings import Schema, validate

ENCODINGS = ("none", "positional", "gaussian", "siren")
RENDER_SCALES = (1, 2, 4)


@dataclass
class FitSettings:
    """How an image INR is built and trained. depth counts the hidden layers (each width wide)
    before the linear RGB layer; lr is Adam's rate for the ReLU networks, siren_lr for SIREN.

    The paper used width 256 and 2000 steps on 512x512 images; the defaults are narrowed for a
    CPU, and pos_freqs / sigma were tuned on ~100-pixel photos (lego, fern views held apart from
    the benchmark images: benchmarks/inr_image_fit.py --stage tune). Both scales are relative to
    the image: a larger image wants larger values."""

    steps: int = 1000
    lr: float = 1e-3
    siren_lr: float = 1e-4
    width: int = 128
    depth: int = 4
    pos_freqs: int = 6
    features: int = 256
    sigma: float = 2.0
    omega0: float = 30.0
    downscale: int = 1
    eval_every: int = 100
    log_every: int = 10
    seed: int = 0
    chunk: int = 65536

    def validate(self) -> list[str]:
        errs = [f"{k}: must be >= 1, got {getattr(self, k)}" for k in
                ("steps", "width", "depth", "features", "downscale", "eval_every", "log_every", "chunk")
                if getattr(self, k) < 1]
        if self.pos_freqs < 0:
            errs.append(f"pos_freqs: must be >= 0, got {self.pos_freqs}")
        errs += [f"{k}: must be > 0, got {getattr(self, k)}" for k in ("lr", "siren_lr", "sigma", "omega0")
                 if not getattr(self, k) > 0]
        return errs


SCHEMA = Schema(FitSettings)


def load_image(path: Path, downscale: int = 1) -> torch.Tensor:
    """An image file as float32 (H, W, 3) in [0, 1]; RGBA is composited over white (as Blender
    scenes are), and `downscale` area-averages by an integer factor."""
    try:
        arr = read_image(Path(path))
    except DatasetError as exc:  # keep the message to one line (imageio's can span several)
        raise UserError(str(exc).splitlines()[0].rstrip(" :")) from None
    img = torch.from_numpy(arr)
    if img.shape[-1] == 4:
        alpha = img[..., 3:]
        img = torch.cat([img[..., :3] * alpha, alpha], -1)  # premultiply so downscaling is exact
    img = downscale_area(img, downscale)
    if img.shape[-1] == 4:
        img = img[..., :3] + (1.0 - img[..., 3:])
    if min(img.shape[:2]) < 4:
        raise UserError(f"{path}: image too small ({img.shape[1]}x{img.shape[0]} after --downscale {downscale}); "
                        "need at least 4x4 pixels")
    return img.contiguous()


def pixel_coords(h: int, w: int, scale: int = 1) -> torch.Tensor:
    """Coordinates (h*scale, w*scale, 2) as (x, y) of the pixel centres of an image `scale` times
    finer than (h, w), in the frame where the (h, w) image's longer side spans [-1, 1]."""
    s = float(max(h, w))
    ys = (torch.arange(h * scale, dtype=torch.float32) + 0.5) / scale
    xs = (torch.arange(w * scale, dtype=torch.float32) + 0.5) / scale
    yy, xx = torch.meshgrid((2 * ys - h) / s, (2 * xs - w) / s, indexing="ij")
    return torch.stack([xx, yy], -1)


def train_mask(h: int, w: int) -> torch.Tensor:
    """(h, w) bool: True on the training pixels, every other pixel in each direction."""
    m = torch.zeros(h, w, dtype=torch.bool)
    m[::2, ::2] = True
    return m


class ImageINR(nn.Module):
    """f(x, y) -> RGB in [0, 1]: an encoding and a ReLU MLP with a sigmoid output, or a SIREN
    whose output o maps to (o + 1) / 2 (SIREN fits targets in [-1, 1])."""

    def __init__(self, encoding: str, s: FitSettings):
        super().__init__()
        if encoding not in ENCODINGS:
            raise UserError(f"--encoding: unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}, all")
        self.kind = encoding
        if encoding == "siren":
            self.net = Siren(2, 3, s.width, s.depth, s.omega0)
            return
        self.enc = make_encoding(encoding, 2, s.pos_freqs, s.features, s.sigma)
        dims = [self.enc.out_dim] + [s.width] * s.depth
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], 3))
        self.net = nn.Sequential(*layers)

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        """xy (n, 2) -> rgb (n, 3)."""
        if self.kind == "siren":
            return (self.net(xy) + 1.0) * 0.5
        return torch.sigmoid(self.net(self.enc(xy)))


@torch.no_grad()
def predict(model: nn.Module, coords: torch.Tensor, chunk: int) -> torch.Tensor:
    """Evaluate on a (..., 2) coordinate grid in chunks -> (..., 3) clamped to [0, 1]."""
    flat = coords.reshape(-1, 2)
    out = torch.cat([model(flat[i:i + chunk]) for i in range(0, flat.shape[0], chunk)])
    return out.clamp(0, 1).reshape(*coords.shape[:-1], 3)


def save_png(path: Path, img: torch.Tensor) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, (img.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))


def fit_one(img: torch.Tensor, encoding: str, s: FitSettings, out_dir: Path | None = None, log=print) -> dict:
    """Fit `img` (H, W, 3) with one encoding; returns its figures (psnr = held-out PSNR).

    With `out_dir`, writes TensorBoard events and the 1x/2x/4x renders there.
    """
    h, w = img.shape[:2]
    coords = pixel_coords(h, w)
    mask = train_mask(h, w)
    x_train, y_train = coords[mask], img[mask]
    x_test, y_test = coords[~mask], img[~mask]
    torch.manual_seed(s.seed)
    model = ImageINR(encoding, s)
    lr = s.siren_lr if encoding == "siren" else s.lr
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    writer = None
    if out_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob("events.out.tfevents.*"):
            old.unlink()
        writer = SummaryWriter(log_dir=str(out_dir))
    curve = []
    t0 = time.perf_counter()
    for step in range(1, s.steps + 1):
        pred = model(x_train)
        loss = torch.mean((pred - y_train) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if writer is not None and (step % s.log_every == 0 or step == 1):
            writer.add_scalar("train/loss", loss.item(), step)
            writer.add_scalar("train/psnr", psnr_from_mse(loss.item()), step)
            writer.add_scalar("train/lr", lr, step)
        if step % s.eval_every == 0 or step == s.steps:
            test_psnr = psnr(predict(model, x_test, s.chunk), y_test)
            curve.append([step, test_psnr])
            if writer is not None:
                writer.add_scalar("eval/psnr", test_psnr, step)
    seconds = time.perf_counter() - t0
    full = predict(model, coords, s.chunk)
    result = {
        "psnr": psnr(full[~mask], y_test),
        "train_psnr": psnr(full[mask], y_train),
        "full_psnr": psnr(full, img),
        "steps": s.steps,
        "seconds": seconds,
        "params": sum(p.numel() for p in model.parameters()),
        "curve": curve,
    }
    if out_dir is not None:
        for scale in RENDER_SCALES:
            render = full if scale == 1 else predict(model, pixel_coords(h, w, scale), s.chunk)
            save_png(out_dir / f"render_{scale}x.png", render)
            if writer is not None:
                writer.add_image(f"eval/rgb_{scale}x", render, s.steps, dataformats="HWC")
        writer.add_image("eval/gt", img, s.steps, dataformats="HWC")
        writer.add_scalar("perf/steps_per_s", s.steps / seconds, s.steps)
        writer.flush()
        writer.close()
    log(f"  {encoding:<10} held-out PSNR {result['psnr']:6.2f} dB  train {result['train_psnr']:6.2f} dB  "
        f"({s.steps} steps, {seconds:.1f} s)")
    return result


def results_table(metrics: dict) -> str:
    """A Markdown table of the figures, best held-out PSNR first."""
    rows = ["| encoding | held-out PSNR (dB) | train PSNR (dB) | full PSNR (dB) | params | seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in metrics.items():
        rows.append(f"| {name} | {m['psnr']:.2f} | {m['train_psnr']:.2f} | {m['full_psnr']:.2f} | "
                    f"{m['params']} | {m['seconds']:.1f} |")
    return "\n".join(rows) + "\n"


def comparison_figure(path: Path, img: torch.Tensor, renders: dict[str, torch.Tensor], metrics: dict) -> None:
    """Ground truth and every encoding's 1x render side by side (labelled when matplotlib is present)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # an unlabelled strip, in the order ground truth, then the encodings as listed
        gap = torch.ones(img.shape[0], 4, 3)
        strip = [img] + [t for r in renders.values() for t in (gap, r)]
        save_png(path, torch.cat(strip, 1))
        return
    n = len(renders) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.6 * img.shape[0] / img.shape[1] + 0.5))
    for ax, (title, im) in zip(axes, [("ground truth", img)] +
                               [(f"{k}: {metrics[k]['psnr']:.2f} dB", v) for k, v in renders.items()]):
        ax.imshow(im.clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle("held-out PSNR (every other pixel trained)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fit_image(image: Path, encodings: list[str], out_dir: Path, s: FitSettings, log=print) -> dict:
    """Fit `image` with each of `encodings`, write the outputs into `out_dir`, return the metrics."""
    validate(s)
    img = load_image(image, s.downscale)
    h, w = img.shape[:2]
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"fit-image: {image} ({w}x{h}, {int(train_mask(h, w).sum())} training pixels) -> {out_dir}")
    metrics, renders = {}, {}
    for enc in encodings:
        metrics[enc] = fit_one(img, enc, s, out_dir / enc, log)
        import imageio.v3 as iio

        renders[enc] = torch.from_numpy(iio.imread(out_dir / enc / "render_1x.png").astype(np.float32) / 255.0)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "settings.json").write_text(json.dumps(
        {"image": str(image), "width": w, "height": h, "encodings": encodings, **dataclasses.asdict(s)}, indent=2))
    table = results_table(metrics)
    (out_dir / "table.md").write_text(f"Image regression on {image} ({w}x{h}), trained on every other pixel, "
                                      f"{s.steps} steps.\n\n" + table)
    comparison_figure(out_dir / "comparison.png", img, renders, metrics)
    return metrics
