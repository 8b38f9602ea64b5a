"""The same code on a GPU, in one command: the test suite on CUDA, then lego at 800x800 trained
for a fixed time, scored on test views and timed per rendered frame, written to a record.

Why: the project is developed and tuned on a CPU; this is the check that the very same code runs
on CUDA, and the figures it reaches there, taken the same way each time.

    python benchmarks/gpu_check.py --data ../shared/data/nerf_synthetic/lego
    python benchmarks/gpu_check.py --tiny --out /tmp/gpu-check      # CPU, seconds: what CI runs

Stages (each timed; a failed stage is recorded and the later ones still run):
  environment  torch, CUDA, GPU name, CPU count; without CUDA it stops (exit 2) unless --tiny
               or --device cpu
  tests        `pytest -q` in a subprocess with NERF_TEST_DEVICE set, killed after --test-timeout
  train        train-scene on lego, model.method=fast, data.downscale=1, --minutes of training,
               then its own evaluation on --views evenly spaced test views (metrics.json)
  video        render-video on the trained run, --frames frames (seconds per frame)
The record: benchmarks/results/gpu-check-<date>.md and .json (--tiny: under --out only). Exit
status 0 when every stage passed, 1 when one failed, 2 when refused.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LEGO = ROOT.parent / "shared" / "data" / "nerf_synthetic" / "lego"
TINY_TESTS = ["tests/test_render_math.py"]
THIS_TEST = "tests/test_gpu_check.py"  # runs this script: never from inside it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=LEGO, help=f"the lego scene folder (default: {LEGO})")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget in minutes (default 5)")
    p.add_argument("--max-steps", type=int, default=1_000_000,
                   help="step cap; the default is out of reach so that the time budget ends training")
    p.add_argument("--views", type=int, default=25, help="test views scored (evenly spaced; default 25)")
    p.add_argument("--frames", type=int, default=None, help="render-video frames (default 10; --tiny 3)")
    p.add_argument("--test-timeout", type=float, default=240.0, help="wall-clock limit of the test suite, s")
    p.add_argument("--test-workers", type=int, default=None,
                   help="run the tests in N processes, each with CPUs/N threads (pytest-xdist, when installed); "
                        "default: half the CPUs, at most 8, where there are 8 or more (--tiny: 1)")
    p.add_argument("--out", type=Path, default=None,
                   help="work folder for the run and logs (default runs/gpu-check; --tiny needs it or uses "
                        "runs/gpu-check-tiny)")
    p.add_argument("--record", type=Path, default=None,
                   help="the record's .md path (default benchmarks/results/gpu-check-<date>.md; --tiny: under --out)")
    p.add_argument("--device", choices=["cuda", "cpu"], default=None,
                   help="where tests, training and rendering run (default cuda; --tiny: cpu)")
    p.add_argument("--commit", default=None,
                   help="the commit to name in the record when the checkout has no git metadata (a copied tree)")
    p.add_argument("--tiny", action="store_true",
                   help="CI size: a few tests, the built-in scene, 20 steps, 2 views, 3 frames; CPU by default")
    a = p.parse_args(argv)
    a.device = a.device or ("cpu" if a.tiny else "cuda")
    a.frames = a.frames or (3 if a.tiny else 10)
    if a.test_workers is None:
        cpus = os.cpu_count() or 1
        a.test_workers = 1 if a.tiny or cpus < 8 else min(8, cpus // 2)
    a.out = a.out or ROOT / "runs" / ("gpu-check-tiny" if a.tiny else "gpu-check")
    if a.tiny and a.record is not None and a.record.resolve().is_relative_to(RESULTS):
        p.error("--tiny figures are not results: its --record must lie outside benchmarks/results/")
    return a


# ---------------------------------------------------------------------------------------------
# helpers


def run_logged(cmd: list[str], log: Path, timeout: float, env: dict | None = None) -> tuple[int | None, str]:
    """Run `cmd` with stdout and stderr into `log`; kill its process group after `timeout` s.
    Returns (exit status or None when killed, the log's text)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended just now
                pass
            proc.wait()
            code = None
    return code, log.read_text(errors="replace")


def command(name: str) -> list[str]:
    """An installed console script (beside this Python), else `python -m nerf NAME`."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.is_file() else [sys.executable, "-m", "nerf", name]


def git_commit(override: str | None) -> str:
    if override:
        return override
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=ROOT, timeout=10).stdout.strip()
        return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def nvidia_smi(query: str) -> list[str] | None:
    """Lines of `nvidia-smi --query-gpu=QUERY`, or None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip().splitlines() if r.returncode == 0 else None


class GpuMemoryPoll:
    """The most GPU memory in use (whole device, MiB) seen by nvidia-smi every `every` s while
    the `with` block runs; None without nvidia-smi."""

    def __init__(self, every: float = 2.0):
        self.every, self.peak_mib, self._stop = every, None, threading.Event()

    def _poll(self):
        while not self._stop.is_set():
            lines = nvidia_smi("memory.used")
            if lines:
                used = max(float(x) for x in lines[:1])
                self.peak_mib = used if self.peak_mib is None else max(self.peak_mib, used)
            self._stop.wait(self.every)

    def __enter__(self):
        if shutil.which("nvidia-smi") is not None:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")
# one line per test with -v: "tests/t.py::name PASSED [ 5%]", or under xdist "[gw3] [ 5%] PASSED tests/t.py::name"
OUTCOMES = {"PASSED": "passed", "FAILED": "failed", "ERROR": "errors", "SKIPPED": "skipped", "XFAIL": "xfailed",
            "XPASS": "xpassed"}
WORD = "|".join(OUTCOMES)
TEST_LINE = re.compile(rf"^(?:\[gw\d+\] \[\s*\d+%\] ({WORD}) (\S.*?)|(\S+?::.*?) ({WORD}))\s*(?:\[\s*\d+%\])?\s*$")


def pytest_counts(text: str) -> dict:
    """passed/failed/... from pytest's last summary line, or, when it was killed before that, from
    the per-test lines printed so far (marked partial); the ids of the failed tests either way."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    counts = dict.fromkeys(OUTCOMES.values(), 0)
    failed_ids = []
    for line in lines:
        m = TEST_LINE.match(line.strip())
        if m:
            word, test = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
            counts[OUTCOMES[word]] += 1
            if word in ("FAILED", "ERROR"):
                failed_ids.append(test)
    for line in reversed(lines[-3:]):
        found = PYTEST_COUNT.findall(line)
        if (found and " in " in line) or line.strip("= ").startswith("no tests ran"):
            counts = dict.fromkeys(OUTCOMES.values(), 0)
            counts.update({("errors" if k.startswith("error") else k): int(n) for n, k in found})
            return {"summary": line.strip("= ").strip(), **counts, "failed_tests": failed_ids}
    return {"summary": "partial", "partial": True, **counts, "failed_tests": failed_ids}


# ---------------------------------------------------------------------------------------------
# stages


def stage_environment(a) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    names = nvidia_smi("name")
    gpu = names[0] if names else (torch.cuda.get_device_name(0) if cuda else None)
    env = {"torch": torch.__version__, "cuda_available": cuda, "cuda_version": torch.version.cuda, "gpu": gpu,
           "gpu_count": torch.cuda.device_count() if cuda else 0, "cpu_count": os.cpu_count(),
           "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
           "python": platform.python_version(), "platform": platform.platform(), "device": a.device}
    total = nvidia_smi("memory.total")
    if total:
        env["gpu_memory_total_mib"] = float(total[0])
    return env


def stage_tests(a) -> dict:
    env = dict(os.environ, NERF_TEST_DEVICE=a.device, PYTHONUNBUFFERED="1")
    targets = TINY_TESTS if a.tiny else []
    workers = []
    if a.test_workers > 1:
        if importlib.util.find_spec("xdist") is None:
            print("gpu_check: pytest-xdist is not installed: the tests run in one process", flush=True)
        else:  # N processes of all the CPUs' threads each would oversubscribe the CPUs many times over
            workers = ["-n", str(a.test_workers)]
            threads = str(max(1, (os.cpu_count() or 1) // a.test_workers))
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    # -v: one line per test, so a run killed at the time limit still names what failed so far
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *workers, "--ignore", THIS_TEST, *targets]
    code, text = run_logged(cmd, a.out / "logs" / "tests.log", a.test_timeout, env)
    counts = pytest_counts(text)
    prefix = [f"{k}={env[k]}" for k in ("NERF_TEST_DEVICE", "OMP_NUM_THREADS") if k in env]
    result = {"command": " ".join([*prefix, "python", *cmd[1:]]), "exit": code, **counts}
    if code is None:
        result["error"] = f"timed out after {a.test_timeout:g} s (counts so far: {counts['passed']} passed, " \
                          f"{counts['failed']} failed)"
    elif code != 0:
        result["error"] = f"pytest exit {code}: {counts['summary']}"
    return result


def run_dir(a) -> Path:
    return a.out / ("builtin" if a.tiny else a.data.name)


def train_args(a) -> list[str]:
    common = ["--out", str(run_dir(a)), "--no-showcase", "--overwrite", "--device", a.device]
    if a.tiny:  # the built-in scene
        return ["train.max_steps=20", "train.max_minutes=0.2", "eval.max_views=2", *common]
    return ["--data", str(a.data), "model.method=fast", "data.downscale=1", f"train.max_minutes={a.minutes:g}",
            f"train.max_steps={a.max_steps}", f"eval.max_views={a.views}", *common]


def stage_train(a) -> dict:
    if not a.tiny and not (a.data / "transforms_train.json").is_file():
        raise FileNotFoundError(f"--data {a.data}: no transforms_train.json (the lego scene folder)")
    cmd = command("train-scene") + train_args(a)
    limit = a.minutes * 60 + 600 if not a.tiny else 300  # loading, the time budget, evaluation
    with GpuMemoryPoll() as mem:
        code, text = run_logged(cmd, a.out / "logs" / "train.log", limit, dict(os.environ, PYTHONUNBUFFERED="1"))
    result = {"command": " ".join(["train-scene", *cmd[-len(train_args(a)):]]), "exit": code}
    if mem.peak_mib is not None:
        result["gpu_memory_peak_mib"] = mem.peak_mib
    m = re.search(r"trained (\d+) steps in ([\d.]+) min", text)
    if m:
        result["train_steps"], result["train_minutes"] = int(m.group(1)), float(m.group(2))
    if code != 0:
        tail = " | ".join(text.strip().splitlines()[-3:])
        result["error"] = f"timed out after {limit:g} s" if code is None else f"exit {code}: {tail}"
        return result
    metrics = json.loads((run_dir(a) / "metrics.json").read_text())
    keep = ("psnr", "ssim", "n_views", "seconds_per_view", "width", "height", "step", "split", "scene", "method")
    result.update({k: metrics[k] for k in keep if k in metrics})
    return result


def stage_video(a) -> dict:
    cmd = command("render-video") + [str(run_dir(a)), "--frames", str(a.frames), "--device", a.device]
    code, text = run_logged(cmd, a.out / "logs" / "video.log", 300 if a.tiny else 600,
                            dict(os.environ, PYTHONUNBUFFERED="1"))
    result = {"command": f"render-video {run_dir(a)} --frames {a.frames}", "exit": code}
    m = re.search(r"(\d+) frames in ([\d.]+) s \(([\d.]+) s/frame\)", text)
    if code != 0 or not m:
        tail = " | ".join(text.strip().splitlines()[-3:])
        result["error"] = "timed out" if code is None else f"exit {code}: {tail}"
        return result
    frames, seconds = int(m.group(1)), float(m.group(2))
    result.update({"frames": frames, "seconds": seconds, "seconds_per_frame": seconds / frames})
    return result


def run_stage(record: dict, name: str, fn, a) -> dict:
    print(f"gpu_check: {name} ...", flush=True)
    t0 = time.perf_counter()
    try:
        entry = fn(a)
    except Exception as exc:  # recorded; the later stages still run
        entry = {"error": f"{type(exc).__name__}: {exc}"}
    entry = {"ok": "error" not in entry, **entry, "wall_seconds": round(time.perf_counter() - t0, 1)}
    record["stages"][name] = entry
    print(f"gpu_check: {name} {'ok' if entry['ok'] else 'FAILED: ' + entry['error']} "
          f"({entry['wall_seconds']:.1f} s)", flush=True)
    return entry


# ---------------------------------------------------------------------------------------------
# the record


def figures(record: dict) -> dict:
    """The headline figures, flat (also the JSON's `figures`)."""
    s = record["stages"]
    t, tr, v = s.get("tests", {}), s.get("train", {}), s.get("video", {})
    return {"tests_passed": t.get("passed"), "tests_failed": t.get("failed"), "tests_errors": t.get("errors"),
            "tests_skipped": t.get("skipped"), "tests_seconds": t.get("wall_seconds"),
            "tests_timed_out": t.get("exit", 0) is None and "tests" in s,
            "psnr": tr.get("psnr"), "ssim": tr.get("ssim"), "n_views": tr.get("n_views"), "width": tr.get("width"),
            "height": tr.get("height"), "train_steps": tr.get("train_steps", tr.get("step")),
            "train_minutes": tr.get("train_minutes"), "seconds_per_view": tr.get("seconds_per_view"),
            "video_seconds_per_frame": v.get("seconds_per_frame"), "video_frames": v.get("frames"),
            "gpu_memory_peak_mib": tr.get("gpu_memory_peak_mib")}


def fmt(x, spec: str = "", missing: str = "n/a") -> str:
    return missing if x is None else format(x, spec)


def table(record: dict) -> str:
    f, s = record["figures"], record["stages"]
    size = f"{fmt(f['width'])}x{fmt(f['height'])}"
    tests = s.get("tests", {})
    test_note = " (timed out: counts so far)" if f["tests_timed_out"] else ""
    rows = [
        ("test suite on " + record["device"],
         f"{fmt(f['tests_passed'])} passed, {fmt(f['tests_failed'])} failed, {fmt(f['tests_errors'], '', '0')} errors, "
         f"{fmt(f['tests_skipped'], '', '0')} skipped in {fmt(f['tests_seconds'], '.0f')} s{test_note}"
         if tests else "not run"),
        (f"{record['scene']} PSNR / SSIM on {fmt(f['n_views'])} test views at {size}",
         f"{fmt(f['psnr'], '.2f')} dB / {fmt(f['ssim'], '.4f')}"),
        ("training steps in the budget",
         f"{fmt(f['train_steps'])} steps in {fmt(f['train_minutes'], '.1f')} min"),
        (f"s per {size} frame, evaluation (render + scoring + PNG)", fmt(f["seconds_per_view"], ".3f")),
        (f"s per {size} frame, render-video ({fmt(f['video_frames'])} frames, incl. mp4)",
         fmt(f["video_seconds_per_frame"], ".3f")),
        ("peak GPU memory in use during training (nvidia-smi, whole device)",
         fmt(f["gpu_memory_peak_mib"], ".0f") + (" MiB" if f["gpu_memory_peak_mib"] is not None else "")),
    ]
    lines = ["| figure | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]
    failed = [f"- {k}: {v['error']}" for k, v in s.items() if not v.get("ok", True)]
    failed += [f"  - {t}" for t in tests.get("failed_tests", [])]
    return "\n".join(lines + ([""] + ["Failed stages:"] + failed if failed else []))


def markdown(record: dict) -> str:
    e, a = record["stages"]["environment"], record["args"]
    protocol = (
        f"- tests: `{record['stages'].get('tests', {}).get('command', 'n/a')}`, wall-clock limit "
        f"{a['test_timeout']:g} s.\n"
        f"- training: `{record['stages'].get('train', {}).get('command', 'n/a')}` (the config picked by "
        f"model.method=fast, at full resolution; the step cap is out of reach, so the time budget ends "
        f"training), then train-scene's own evaluation on evenly spaced test views; seconds per view there "
        f"include SSIM and writing the PNGs.\n"
        f"- video: `{record['stages'].get('video', {}).get('command', 'n/a')}`, the Blender 360 path at the "
        f"training size, mp4 encoding included.\n"
        f"- GPU memory: nvidia-smi's memory.used for the whole device, polled every 2 s during train-scene.")
    if record["tiny"]:
        protocol = "- **--tiny**: a CI-sized run on the built-in scene, no meaningful figures.\n" + protocol
    return f"""# GPU check: {record['scene']}, {a['minutes']:g} min, {record['date']}

Written by `benchmarks/gpu_check.py`: the test suite on {record['device']}, then {record['scene']} trained
for a fixed time, scored on test views and timed per frame.

## Protocol

{protocol}

## Machine

- GPU: {e.get('gpu') or 'none'} ({fmt(e.get('gpu_memory_total_mib'), '.0f')} MiB), CUDA {e.get('cuda_version')}
- torch {e.get('torch')}, Python {e.get('python')}
- CPUs: {e.get('cpu_count')} ({e.get('cpus_usable')} usable); {e.get('platform')}

## Commit

{record['commit']}

## Date

{record['date']}

## Table

{table(record)}

## Command

```
{record['command']}
```

Stage wall-clock times (s): {', '.join(f"{k} {v['wall_seconds']:.0f}" for k, v in record['stages'].items())};
total {record['total_seconds']:.0f} s. Logs: {a['out']}/logs/.
"""


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    t0 = time.perf_counter()
    today = datetime.date.today().isoformat()
    record = {"date": today, "commit": git_commit(a.commit), "device": a.device, "tiny": a.tiny,
              "scene": "builtin" if a.tiny else a.data.name,
              "command": " ".join(["python", "benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)]),
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}, "stages": {}}
    env = run_stage(record, "environment", stage_environment, a)
    if a.device == "cuda" and not env.get("cuda_available"):
        print(f"gpu_check: no CUDA device (torch {env.get('torch')}); this check is for a CUDA machine. "
              "Run it with --tiny (or --device cpu) to exercise it on the CPU.", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    for name, fn in (("tests", stage_tests), ("train", stage_train), ("video", stage_video)):
        run_stage(record, name, fn, a)
    record["total_seconds"] = round(time.perf_counter() - t0, 1)
    record["figures"] = figures(record)

    md_path = a.record or (a.out if a.tiny else RESULTS) / f"gpu-check{'-tiny' if a.tiny else ''}-{today}.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown(record))
    md_path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n" + table(record) + f"\n\nrecord: {md_path} (+ .json); total {record['total_seconds']:.0f} s")
    return 0 if all(s["ok"] for s in record["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
