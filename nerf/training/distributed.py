"""Data parallelism under torchrun: one model trained by N processes (gloo between CPUs, NCCL between GPUs).

Why an explicit all-reduce rather than DistributedDataParallel: the fast method replaces its grid
parameters when it upsamples them, which DDP (registered once on a fixed set of parameters) does not
follow. After every rank's backward pass, one flat all-reduce sums the gradients (each already
weighted by its share of the global batch), flags which parameters got a gradient anywhere, and
carries the scalar buffers a forward pass sets from its batch; every rank then takes the same
optimiser step, so parameters, occupancy grid and schedules stay identical without ever being sent.

The global batch is drawn in `train.batch_shards` shards, each from its own random stream (shard 0
is the stream a single process uses); a rank draws its own shards. A single process given the same
number of shards draws the same rays, so it reproduces an N-process run to float rounding.

Every collective goes through this module; a failed one (a rank died) raises `RankLost`, which the
trainer turns into a checkpoint and a one-line message. With one process everything here is a
no-op and nothing is imported from torch.distributed's process groups.
"""
from __future__ import annotations

import atexit
import dataclasses
import datetime
import hashlib
import os
import re
from collections.abc import Callable, Iterator

import torch

from nerf.datasets.process_data import machine_threads
from nerf.errors import UserError


class RankLost(RuntimeError):
    """A collective failed: another process of the job stopped (or the link to it broke)."""


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in the job; `Ranks()` is the single-process case."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: str = "cpu"  # where collective tensors live: cpu for gloo, the rank's GPU for NCCL

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def writer(self) -> bool:
        """Only rank 0 writes the run folder, TensorBoard and the console."""
        return self.rank == 0

    def map(self, n: int, fn: Callable[[int], object]) -> Iterator[tuple[int, object]]:
        """`map_in_rounds` on these ranks: what rendering code takes to split views or frames."""
        return map_in_rounds(self, n, fn)


SINGLE = Ranks()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return default if value is None else int(value)
    except ValueError:
        raise UserError(f"{name}={value!r}: expected an integer (set by torchrun)") from None


def init(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the torchrun job the environment describes (WORLD_SIZE > 1), else run alone.

    On CUDA each rank takes GPU LOCAL_RANK and talks NCCL; on the CPU, gloo. Returns the ranks and
    the device this process trains on. Each rank gets the node's cores / its ranks as CPU threads
    (torchrun starts every process with one); train.threads overrides that for training.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE, device
    import torch.distributed as dist

    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if device.type == "cuda":
        if local_world > torch.cuda.device_count():
            raise UserError(f"torchrun: {local_world} processes per node but {torch.cuda.device_count()} GPU(s); "
                            f"use --nproc-per-node={torch.cuda.device_count()} or --device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    ranks = Ranks(rank, world, local_rank, local_world, str(device) if backend == "nccl" else "cpu")
    torch.set_num_threads(default_threads(ranks))
    atexit.register(shutdown, ranks)
    return ranks, device


def shutdown(ranks: Ranks) -> None:
    if ranks.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def default_threads(ranks: Ranks) -> int:
    """CPU threads for this process: the cores this process may use, shared among the node's ranks."""
    return max(1, machine_threads() // ranks.local_world)


def shard_seed(seed: int, shard: int, restart_step: int | None = None) -> int:
    """The seed of shard `shard`'s random stream: `seed` itself for shard 0 (the single-process
    stream), a hash of (seed, shard) for the others, so no two shards of any seeds share one.
    `restart_step`: a stream restarted at that step (its checkpointed state was not available)."""
    if shard == 0 and restart_step is None:
        return seed
    key = f"nerf-shard/{seed}/{shard}" + ("" if restart_step is None else f"/{restart_step}")
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def shard_sizes(batch: int, shards: int) -> list[int]:
    """Rays per shard: the global batch split as evenly as it divides."""
    return [batch // shards + (s < batch % shards) for s in range(shards)]


def local_shards(ranks: Ranks, shards: int) -> range:
    """The shards this rank draws: a contiguous block, so the last shard is on the last rank."""
    per = shards // ranks.world
    return range(ranks.rank * per, (ranks.rank + 1) * per)


def resolve_shards(ranks: Ranks, configured: int, batch: int) -> int:
    """train.batch_shards, 0 meaning one per process; checked against the job's size."""
    shards = configured or ranks.world
    if shards % ranks.world:
        raise UserError(f"train.batch_shards: {shards} shards do not divide among {ranks.world} processes; "
                        f"use a multiple of {ranks.world} (or 0: one per process)")
    if batch < shards:
        raise UserError(f"train.batch_rays: {batch} rays cannot fill {shards} shards")
    return shards


def _collective(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:  # gloo's "Connection reset by peer", NCCL errors, timeouts
        lines = str(exc).strip().splitlines()
        # the first sentence, without the source location gloo puts first
        first = re.sub(r"^\[[^\]]*\]\s*", "", lines[-1] if lines else "").split(". ")[0]
        raise RankLost(first or type(exc).__name__) from exc


def _synced_buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    """Scalar floating buffers: values a forward pass may set from its own batch (e.g. the share
    of steps a pruning probe kept). They follow the last rank, i.e. the last shard, as in a single
    process that runs the shards in turn."""
    return [b for b in model.buffers() if b.dim() == 0 and b.is_floating_point()]


def flat_size(model: torch.nn.Module) -> int:
    """Elements in the per-step all-reduce: every gradient, a presence flag per parameter, the scalar buffers."""
    params = [p for p in model.parameters() if p.requires_grad]
    return sum(p.numel() for p in params) + len(params) + len(_synced_buffers(model))


def reduce_gradients(ranks: Ranks, model: torch.nn.Module, finite: bool) -> bool:
    """Sum every rank's (already weighted) gradients in one flat all-reduce and write them back.

    A parameter gets a gradient when any rank produced one (as in one process over the whole
    batch). A rank whose loss was not finite sends NaN, so every rank skips the update together.
    Returns whether the summed gradients are finite.
    """
    if not ranks.active:
        return finite
    import torch.distributed as dist

    params = [p for p in model.parameters() if p.requires_grad]
    buffers = _synced_buffers(model)
    dev = torch.device(ranks.device)
    parts = [(p.grad.detach().reshape(-1).float() if p.grad is not None else torch.zeros(p.numel(), device=p.device))
             .to(dev) for p in params]
    parts.append(torch.tensor([float(p.grad is not None) for p in params], device=dev))
    last = ranks.rank == ranks.world - 1
    parts.append(torch.stack([b.detach().float().to(dev) if last else torch.zeros((), device=dev)
                              for b in buffers]) if buffers else torch.zeros(0, device=dev))
    flat = torch.cat(parts)
    if not finite:
        flat.fill_(float("nan"))
    _collective(dist.all_reduce, flat)
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.numel()].view_as(p).to(device=p.device, dtype=p.dtype)
        offset += p.numel()
    present = flat[offset:offset + len(params)]
    offset += len(params)
    for b, v in zip(buffers, flat[offset:]):
        b.fill_(v)
    summed_finite = bool(torch.isfinite(flat).all())
    for p, has in zip(params, present.tolist()):
        if not has > 0 and summed_finite:
            p.grad = None
    return summed_finite


def sync_step_state(ranks: Ranks, seconds: float, signum: int | None) -> tuple[float, int | None]:
    """Before each step: every rank adopts rank 0's training clock (time budgets and time-based
    learning-rate decay then agree) and learns whether any rank was asked to stop (and by which signal)."""
    if not ranks.active:
        return seconds, signum
    import torch.distributed as dist

    t = torch.tensor([seconds if ranks.rank == 0 else 0.0, float(signum or 0)], dtype=torch.float64,
                     device=ranks.device)
    _collective(dist.all_reduce, t, op=dist.ReduceOp.MAX)
    return float(t[0]), (int(t[1]) or None)


def mean_over_ranks(ranks: Ranks, figures: dict[str, float]) -> dict[str, float]:
    """The mean of each named figure over the ranks (for logging: every rank saw part of the batch)."""
    if not ranks.active:
        return figures
    import torch.distributed as dist

    names = sorted(figures)
    t = torch.tensor([float(figures[k]) for k in names], dtype=torch.float64, device=ranks.device)
    _collective(dist.all_reduce, t)
    return dict(zip(names, (t / ranks.world).tolist()))


def all_gather(ranks: Ranks, obj) -> list:
    """Every rank's `obj` (picklable, CPU tensors), in rank order, on every rank."""
    if not ranks.active:
        return [obj]
    import torch.distributed as dist

    out = [None] * ranks.world
    _collective(dist.all_gather_object, out, obj)
    return out


def from_rank0(ranks: Ranks, fn: Callable[[], object]):
    """Run `fn` on rank 0 only (reading or preparing the run folder) and give every rank its
    result, or raise its exception on every rank, so all stop together with the same message."""
    if not ranks.active:
        return fn()
    import torch.distributed as dist

    box = [None]
    if ranks.rank == 0:
        try:
            box[0] = (True, fn())
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            box[0] = (False, exc)
    _collective(dist.broadcast_object_list, box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def broadcast_model(ranks: Ranks, model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (in place)."""
    if not ranks.active:
        return
    import torch.distributed as dist

    for t in model.state_dict().values():
        wire = t.view(torch.uint8) if t.dtype == torch.bool else t
        if wire.device == torch.device(ranks.device):
            _collective(dist.broadcast, wire, src=0)
        else:
            moved = wire.to(ranks.device)
            _collective(dist.broadcast, moved, src=0)
            wire.copy_(moved)


def differing_tensors(ranks: Ranks, model: torch.nn.Module) -> list[str]:
    """Names of parameters and buffers whose checksum differs from rank 0's (expected: none)."""
    if not ranks.active:
        return []
    names, sums = [], []
    for name, t in model.state_dict().items():
        x = t.detach().double()
        names.append(name)
        sums.append(torch.stack([x.sum(), x.abs().sum()]).cpu())
    mine = torch.stack(sums) if sums else torch.zeros(0, 2, dtype=torch.float64)
    every = all_gather(ranks, mine)
    return [n for i, n in enumerate(names) if any(not torch.equal(other[i], every[0][i]) for other in every[1:])]


def map_in_rounds(ranks: Ranks, n: int, fn: Callable[[int], object]) -> Iterator[tuple[int, object]]:
    """Items 0..n-1 split across the ranks in rounds (rank r does item k * world + r); rank 0
    receives every result, in order, one round at a time (memory stays at one item per rank), and
    yields (i, result); the other ranks yield nothing but must exhaust the iterator. `fn` should
    return CPU tensors. One process: (i, fn(i)) for each i."""
    if not ranks.active:
        for i in range(n):
            yield i, fn(i)
        return
    import torch.distributed as dist

    for start in range(0, n, ranks.world):
        i = start + ranks.rank
        mine = fn(i) if i < n else None
        got = [None] * ranks.world if ranks.rank == 0 else None
        _collective(dist.gather_object, mine, got, dst=0)
        if ranks.rank == 0:
            for r, result in enumerate(got):
                if start + r < n:
                    yield start + r, result
