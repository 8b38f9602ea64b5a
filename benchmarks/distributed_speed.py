"""Data-parallel training under torchrun on this machine's CPUs: steps per second with 1 and 2
processes x 1 thread against 1 process x 2 threads, bytes all-reduced per step for each method,
gloo's time for that all-reduce, and an estimate on paper of the number of GPUs at which the
all-reduce would take longer than the computation for lego at 800x800.

    flock /tmp/nerf-bench.lock python benchmarks/distributed_speed.py [--steps 80] [--rounds 2]

Training speed: `train-scene` on the built-in scene (configs/builtin.yaml for the fast method,
builtin_nerf.yaml for the paper model) for `--steps` steps, no evaluation; steps/s is the median of
the TensorBoard windows' perf/rays_per_s (every 10 steps, the first window left out) over the
global batch. The three set-ups take turns, `--rounds` times. Writes
benchmarks/results/distributed_speed-<date>.json and the record distributed-<date>.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dated, machine, median, write_json  # noqa: E402
from nerf.config import load_config  # noqa: E402
from nerf.runs.run_folder import build_run_model  # noqa: E402
from nerf.scene_rays import SceneInfo  # noqa: E402
from nerf.training.distributed import flat_size  # noqa: E402

METHODS = {"fast": "builtin", "nerf": "builtin_nerf"}
LEGO_CONFIGS = {"fast": "blender_fast", "nerf": "blender_nerf"}  # the configs train-scene picks for lego at 800x800
SETUPS = {"1 process x 1 thread": (1, 1), "1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}
# A measured GPU step for the estimate: benchmarks/results/gpu-check-2026-12-04.md, lego 800x800,
# blender_fast.yaml (4096 rays a step) on one H200: 16289 steps in 5.0 min of training.
GPU_STEP_S = 5.0 * 60 / 16289
GPU_STEP_SOURCE = "gpu-check-2026-12-04.md: lego 800x800, fast method, one H200, 16289 steps in 5.0 min"
# Link speeds assumed for the estimate, bytes/s in one direction (nominal figures, not measured here)
LINKS = {"NVLink 4 (H100/H200 SXM, 450 GB/s a direction)": 450e9, "PCIe 5.0 x16 (64 GB/s)": 64e9,
         "100 Gb/s Ethernet / InfiniBand EDR (12.5 GB/s)": 12.5e9, "25 Gb/s Ethernet (3.1 GB/s)": 3.125e9}


def allreduce_bytes(config: str) -> int:
    """Bytes of the per-step flat all-reduce (float32) for a config's model, on a Blender-like
    SceneInfo standing in for lego (a box: `encoding: auto` resolves to the factors)."""
    info = SceneInfo(near=2.0, far=6.0, bbox=[[-1.5] * 3, [1.5] * 3], background=[1.0, 1.0, 1.0])
    cfg = load_config(config, [])
    model = build_run_model(cfg, info)
    fc = model.fc if cfg.model.method == "fast" else None  # encoding auto resolved for this scene
    if fc is not None and fc.grid_res_start:  # coarse-to-fine: the grid's final size
        model.field.encoding.resize(fc.grid_res)
    return 4 * flat_size(model)


def _allreduce_worker(rank: int, port: int, n: int, repeats: int, out):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    flat = torch.randn(n)
    times = []
    for i in range(repeats + 3):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(flat)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    if rank == 0:
        out.put(median(times))
    dist.destroy_process_group()


def gloo_allreduce_seconds(n_bytes: int, repeats: int = 10) -> float:
    """Median seconds of one all-reduce of n_bytes (float32) between 2 local gloo processes."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    procs = [ctx.Process(target=_allreduce_worker, args=(r, port, n_bytes // 4, repeats, out)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return out.get()


def steps_per_second(method: str, procs: int, threads: int, steps: int) -> float:
    """Median steps/s of a `steps`-step train-scene run on the built-in scene (first window left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = METHODS[method]
    batch = load_config(config, []).train.batch_rays
    with tempfile.TemporaryDirectory() as tmp:
        args = ["train-scene", "--config", config, "--out", f"{tmp}/run", f"train.max_steps={steps}",
                "train.max_minutes=0", "train.log_every=10", "train.eval_every=0", "train.checkpoint_every=100000",
                f"train.threads={threads}", "--no-eval", "--no-showcase", "--quiet"]
        if procs > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", "-m",
                   "nerf", *args]
        else:
            cmd = [sys.executable, "-m", "nerf", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        acc = EventAccumulator(f"{tmp}/run").Reload()
        windows = [e.value for e in acc.Scalars("perf/rays_per_s") if e.step > 10]
    return median(windows) / batch


def record(result: dict, command: str) -> str:
    m, speed = result["machine"], result["steps_per_s"]
    lines = [
        f"# Data-parallel training under torchrun: speed on 2 CPU cores, bytes per step, {result['date']}", "",
        "## Protocol", "",
        f"- Training speed: `train-scene` on the built-in scene, `{METHODS['fast']}.yaml` (fast method, "
        f"{result['batch']['fast']} rays a step) and `{METHODS['nerf']}.yaml` (paper model, {result['batch']['nerf']} "
        f"rays a step), {result['steps']} steps from a fresh start, no evaluation; steps/s = the median TensorBoard "
        "`perf/rays_per_s` window (10 steps each, the first left out) / the global batch. The set-ups take turns, "
        f"{result['rounds']} rounds; the table gives the median over rounds. Two processes: "
        "`torchrun --standalone --nproc-per-node=2 -m nerf train-scene ...`, gloo, one shard of the batch each.",
        "- Bytes all-reduced per step: every gradient, a flag per parameter and the scalar buffers, float32 "
        "(`flat_size` in nerf/training/distributed.py), for the configs train-scene picks for lego at 800x800 "
        f"(`{LEGO_CONFIGS['fast']}.yaml`, `{LEGO_CONFIGS['nerf']}.yaml`) and for the built-in ones.",
        "- gloo all-reduce time: 2 local processes, 1 thread each, one all-reduce of that many bytes, median of 10.",
        "", "## Machine", "",
        f"{m['cores']} cores ({m['cpu']}), shared; torch {m['torch']}; load average {m['load_avg_1min']:.1f} at the start.",
        "", "## Commit and date", "", f"{m['commit']}, {result['date']}.", "", "## Results", "",
        "| method | " + " | ".join(SETUPS) + " |", "| --- |" + " ---: |" * len(SETUPS)]
    for method in METHODS:
        lines.append(f"| {method} (steps/s) | " + " | ".join(f"{median(speed[method][s]):.2f}" for s in SETUPS) + " |")
    lines += ["", "| config | parameters + flags | bytes per step | gloo all-reduce, 2 local processes |",
              "| --- | ---: | ---: | ---: |"]
    for config, b in result["bytes"].items():
        lines.append(f"| {config}.yaml | {b // 4:,} | {b / 1e6:.2f} MB | {1000 * result['gloo_s'][config]:.1f} ms |")
    est = result["estimate"]
    lines += ["", "### On paper: when communication would dominate (lego 800x800, fast method)", "",
              f"Step time on one GPU: T = {1000 * est['gpu_step_s']:.1f} ms ({GPU_STEP_SOURCE}); bytes per step "
              f"S = {est['bytes'] / 1e6:.2f} MB. Data-parallel over N GPUs with the global batch fixed, each GPU "
              "computes about T / N, and a ring all-reduce moves 2 (N - 1) / N x S through each GPU's link. "
              "Communication takes longer than computation from N = 1 + T x B / (2 S), B the link speed in one "
              "direction (latency, and work that does not shrink with N such as the optimiser update and the "
              "occupancy refresh, make the real point earlier; overlapping the all-reduce with backward, which "
              "this code does not do, would make it later):", "",
              "| link (assumed) | N where the all-reduce equals the computation |", "| --- | ---: |"]
    for link, n in est["gpus"].items():
        lines.append(f"| {link} | {n:.0f} |")
    lines += ["", "## Command", "", f"    {command}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    date = datetime.date.today().isoformat()
    configs = [LEGO_CONFIGS["fast"], LEGO_CONFIGS["nerf"], METHODS["fast"], METHODS["nerf"]]
    nbytes = {c: allreduce_bytes(c) for c in configs}
    gloo = {c: gloo_allreduce_seconds(b) for c, b in nbytes.items()}
    for c in configs:
        print(f"{c:14s} {nbytes[c] / 1e6:6.2f} MB per step, gloo all-reduce {1000 * gloo[c]:.1f} ms")
    speed = {m: {s: [] for s in SETUPS} for m in METHODS}
    for r in range(a.rounds):
        for method in METHODS:
            for name, (procs, threads) in SETUPS.items():
                speed[method][name].append(steps_per_second(method, procs, threads, a.steps))
                print(f"round {r + 1} {method:4s} {name:24s} {speed[method][name][-1]:.2f} steps/s", flush=True)
    s = nbytes[LEGO_CONFIGS["fast"]]
    estimate = {"gpu_step_s": GPU_STEP_S, "bytes": s,
                "gpus": {link: 1 + GPU_STEP_S * bw / (2 * s) for link, bw in LINKS.items()}}
    result = {"date": date, "steps": a.steps, "rounds": a.rounds, "machine": machine(), "bytes": nbytes,
              "gloo_s": gloo, "steps_per_s": speed, "estimate": estimate,
              "batch": {m: load_config(c, []).train.batch_rays for m, c in METHODS.items()}}
    write_json(dated("distributed_speed", "json", date), result)
    command = "flock /tmp/nerf-bench.lock python benchmarks/distributed_speed.py " + " ".join(sys.argv[1:])
    md = dated("distributed", "md", date)
    md.write_text(record(result, command.strip()))
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
