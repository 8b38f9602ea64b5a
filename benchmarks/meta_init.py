"""Learned vs default initialisation on unseen scenes of the built-in family (Tancik et al. 2021).

Stages (each a few minutes on a shared 2-core CPU, so they run as separate invocations):

  python benchmarks/meta_init.py meta --minutes 2.5 [--tasks 16] [--outer-lr 1.0] [--resume]
      Reptile (nerf.inr.reptile, the code behind `meta-train`) on family seeds 100..100+tasks-1 with
      configs/meta_builtin.yaml -> benchmarks/results/meta_init-<date>.pt (+ meta_init_train-<date>.json);
      --resume continues from the newest meta_init-<date>.pt (meta-training in chunks). The
      reported init: four 30-minute stages on 64 tasks, --outer-lr 0.2 with 16 inner steps, then --resume
      --outer-lr 0.1 with --inner-steps 64, 128 and 200 (epsilon annealed to 0 in each stage;
      benchmarks/results/INR.md).
  python benchmarks/meta_init.py compare --seeds 1
      For each unseen seed: train-scene's Trainer from the default initialisation for 1000 steps
      and from the learned one (--init) for 400, held-out PSNR on the scene's test views at fixed
      steps, from the newest meta_init-<date>.pt -> benchmarks/results/meta_init_seed<N>-<date>.json
  python benchmarks/meta_init.py report
      Collects the newest file of each seed -> meta_init_summary-<date>.json, meta_init-<date>.csv,
      meta_init-<date>.png (PSNR vs step).

<date> is the day a stage runs (YYYY-MM-DD); the init file is git-ignored (benchmarks/results/*.pt).

Target: the learned initialisation reaches the default one's 1000-step PSNR in at most 1/5 of
the steps (200) on every unseen scene.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import KEEP_FREED_MEMORY, RESULTS, dated, latest, latest_each  # noqa: E402

CONFIG = ROOT / "configs" / "meta_builtin.yaml"
DEFAULT_STEPS = 1000
LEARNED_STEPS = 400
EVAL_STEPS = [0, 10, 25, 50, 75, 100, 150, 200, 300, 400, 600, 800, 1000]


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return "unknown"


def machine() -> dict:
    return {"threads": torch.get_num_threads(), "commit": commit(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "keep_freed_memory": KEEP_FREED_MEMORY}


def stage_meta(a) -> None:
    from nerf.config import load_config
    from nerf.inr.reptile import MetaConfig, meta_train
    from nerf.runs.init_files import save_init

    cfg = load_config(str(CONFIG), [f"train.seed={a.seed}"])
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    ms = MetaConfig(meta_steps=a.meta_steps, inner_steps=a.inner_steps, outer_lr=a.outer_lr, n_tasks=a.tasks,
                      first_seed=100, minutes=a.minutes)
    start = latest("meta_init", "pt") if a.resume else None
    if a.resume and start is None:
        sys.exit(f"--resume: no meta_init-<date>.pt in {RESULTS}; run the meta stage without it first")
    model, summary = meta_train(cfg, ms, start_from=start)
    RESULTS.mkdir(parents=True, exist_ok=True)
    init = dated("meta_init", "pt")
    save_init(init, model, cfg, summary)
    summary["machine"] = machine()
    dated("meta_init_train", "json").write_text(json.dumps(summary))  # one line: thousands of history rows
    print(f"wrote {init} after {summary['total_meta_steps']} Reptile steps ({summary['total_seconds']:.0f} s in all)")


def run_curve(seed: int, init: Path | None, steps: int) -> list[list[float]]:
    """Held-out PSNR (mean over the test views) at EVAL_STEPS <= steps, training with train-scene's Trainer."""
    from nerf.config import load_config
    from nerf.datasets import load_scene
    from nerf.inference.views import score_views
    from nerf.training.trainer import Trainer

    cfg = load_config(str(CONFIG), [f"data.synthetic.seed={seed}", f"train.max_steps={DEFAULT_STEPS}"])
    test = load_scene(cfg.data, "test")
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, Path(tmp) / "run", torch.device("cpu"), log=lambda *x: None, show_progress=False,
                     init_file=init)
        t0, train_s = time.perf_counter(), 0.0
        while True:
            if tr.step in EVAL_STEPS:
                curve.append([tr.step, score_views(tr.model, test, tr.info, cfg.render.chunk)["psnr"], train_s])
            if tr.step >= steps:
                break
            t1 = time.perf_counter()
            tr.train_step()
            train_s += time.perf_counter() - t1
    print(f"  seed {seed} {'learned' if init else 'default'}: " +
          ", ".join(f"{int(s)}:{p:.2f}" for s, p, _ in curve) + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return curve


def steps_to_reach(curve: list, target: float) -> float | None:
    """First evaluated step whose PSNR >= target, linearly interpolated between evaluations."""
    prev = None
    for step, p, _ in curve:
        if p >= target:
            if prev is None:
                return float(step)
            s0, p0 = prev
            return s0 + (step - s0) * (target - p0) / (p - p0)
        prev = (step, p)
    return None


def stage_compare(a) -> None:
    torch.set_num_threads(1)
    init = latest("meta_init", "pt")
    if init is None:
        sys.exit(f"no meta_init-<date>.pt in {RESULTS}; run the meta stage first")
    for seed in a.seeds:
        if 100 <= seed < 100 + 64:
            sys.exit(f"seed {seed}: in the meta-training range; pick an unseen one")
        default = run_curve(seed, None, DEFAULT_STEPS)
        learned = run_curve(seed, init, LEARNED_STEPS)
        target = default[-1][1]
        reach = steps_to_reach(learned, target)
        out = {"seed": seed, "default": default, "learned": learned, "default_1000_psnr": target,
               "learned_steps_to_default_1000": reach, "init": init.name, "machine": machine()}
        dated(f"meta_init_seed{seed}", "json").write_text(json.dumps(out, indent=1))
        print(f"seed {seed}: default@1000 {target:.2f} dB; learned reaches it at step "
              f"{'>' + str(LEARNED_STEPS) if reach is None else f'{reach:.0f}'}")


def stage_report(a) -> None:
    runs = [json.loads(p.read_text()) for p in latest_each("meta_init_seed*", "json").values()]
    if not runs:
        sys.exit("no meta_init_seed<N>-<date>.json results; run the compare stage first")
    rows = []
    for r in runs:
        d, lrn = dict((int(s), p) for s, p, _ in r["default"]), dict((int(s), p) for s, p, _ in r["learned"])
        reach = r["learned_steps_to_default_1000"]
        rows.append({"seed": r["seed"], "default_psnr_0": d[0], "learned_psnr_0": lrn[0], "default_psnr_200": d[200],
                     "learned_psnr_200": lrn[200], "default_psnr_1000": d[1000], "learned_psnr_400": lrn.get(400),
                     "learned_steps_to_default_1000": reach,
                     "fraction_of_1000": None if reach is None else reach / DEFAULT_STEPS,
                     "target_met": reach is not None and reach <= DEFAULT_STEPS / 5})
    train_file = latest("meta_init_train", "json")
    train = json.loads(train_file.read_text()) if train_file else {}
    summary = {"rows": rows, "all_targets_met": all(r["target_met"] for r in rows),
               "config": str(CONFIG.relative_to(ROOT)),
               "meta_training": "seeds {}..{}".format(*train["seeds"]) if "seeds" in train else None,
               "meta_steps": train.get("total_meta_steps"), "meta_seconds": train.get("total_seconds")}
    dated("meta_init_summary", "json").write_text(json.dumps(summary, indent=1))
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join("" if r[k] is None else f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                                         for k in keys) for r in rows]
    dated("meta_init", "csv").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figure")
        return
    fig, axes = plt.subplots(1, len(runs), figsize=(3.6 * len(runs), 3.0), squeeze=False)
    for ax, r in zip(axes[0], runs):
        for key, style in (("default", "k-"), ("learned", "C1-")):
            ax.plot([s for s, _, _ in r[key]], [p for _, p, _ in r[key]], style, marker=".", label=f"{key} init")
        ax.axhline(r["default_1000_psnr"], color="grey", ls=":", lw=1)
        if r["learned_steps_to_default_1000"] is not None:
            ax.axvline(r["learned_steps_to_default_1000"], color="C1", ls=":", lw=1)
        ax.axvline(200, color="red", ls="--", lw=0.8)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(0, DEFAULT_STEPS * 1.05)
        ax.set_title(f"unseen scene seed {r['seed']}", fontsize=9)
        ax.set_xlabel("training steps")
        ax.set_ylabel("held-out PSNR (dB)")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    png = dated("meta_init", "png")
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    m = sub.add_parser("meta")
    m.add_argument("--minutes", type=float, default=2.5)
    m.add_argument("--meta-steps", type=int, default=100000)
    m.add_argument("--inner-steps", type=int, default=16)
    m.add_argument("--outer-lr", type=float, default=1.0)
    m.add_argument("--tasks", type=int, default=16)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--resume", action="store_true", help="continue from the newest benchmarks/results/meta_init-<date>.pt")
    c = sub.add_parser("compare")
    c.add_argument("--seeds", type=int, nargs="+", default=[1])
    sub.add_parser("report")
    a = p.parse_args()
    {"meta": stage_meta, "compare": stage_compare, "report": stage_report}[a.stage](a)


if __name__ == "__main__":
    main()
