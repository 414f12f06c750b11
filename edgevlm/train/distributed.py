"""Data-parallel training over processes and nodes, as started by ``torchrun`` or ``accelerate launch``.

Both launchers set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`launch`
joins that ``torch.distributed`` process group (gloo on CPU, nccl on CUDA) and :class:`Dist` holds the few
collectives the trainer needs. Without those variables (a plain ``edgevlm train``) nothing is initialised and every
collective is a no-op, so one process runs exactly as before.

Gradients are summed by an all-reduce of the parameters that received one, in flat buckets, once per optimizer
step, instead of wrapping the model in ``DistributedDataParallel``: per step only one task's adapter trains (tasks
take turns), so DDP would need ``find_unused_parameters`` (an autograd-graph walk every step) and a forward wrapper
around a loss that is not the module's ``forward``, and it would broadcast and bucket the frozen backbone. The sum
is DDP's arithmetic; what it gives up is DDP's overlap of communication with the backward pass, which matters for
``--full`` on many GPUs, not for adapters (a few % of the backbone).

Every rank draws the same global batch from the shared data generator and takes its own slices, and the loss is
normalised by the global batch's target-token count, so the summed gradient is the one a single process computes
on the whole global batch (``--batch-size`` x processes x ``--grad-accum``).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from edgevlm.core.errors import ConfigError, DistributedError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
BUCKET = 1 << 24  # elements per all-reduce (64 MB of fp32)
# Test hook: "R:S" makes rank R kill itself (SIGKILL) right after step S, "R:S:stop" stop itself (SIGSTOP, a
# hung process), to check that a lost rank fails the job with a clear message rather than a hang.
FAULT_ENV = "EDGEVLM_TEST_KILL_RANK_AT_STEP"


@dataclass
class Dist:
    """This process's place in the job (rank 0 of 1 when not launched by torchrun / accelerate)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32  # the forward's autocast dtype (weights and gradients stay fp32)
    timeout_s: float = 600.0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self, batch: int, accum: int) -> str:
        """One line for the log: the global batch and how it is made."""
        how = f"{batch} per process x {self.world} process(es) x {accum} accumulation step(s)"
        return f"global batch {batch * self.world * accum} = {how}; {self.device}, {precision_name(self.dtype)}"

    def shard(self, indices: list[int], batch: int) -> list[list[int]]:
        """This rank's micro-batches of one global batch: micro-batch ``m`` is slice ``m * world + rank``."""
        accum = len(indices) // (batch * self.world)
        return [indices[(m * self.world + self.rank) * batch :][:batch] for m in range(accum)]

    def seed_step(self, seed: int, step: int) -> None:
        """Seed the torch RNG (dropout) from (seed, rank, step) alone: ranks differ, and a resumed run of any
        rank draws what the uninterrupted run drew, with no per-rank RNG state to save."""
        digest = hashlib.sha256(f"{seed}:{self.rank}:{step}".encode()).digest()
        torch.manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    @contextlib.contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """Turn a failed collective (a peer exited, was killed or stopped answering) into one clear error."""
        try:
            yield
        except RuntimeError as e:  # torch.distributed.DistError and the backends' errors derive from it
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise DistributedError(
                f"rank {self.rank} of {self.world}: {what} failed: another process exited, was killed or did not "
                f"answer within {self.timeout_s:g} s (--dist-timeout) [{first}]"
            ) from None

    def _reduce(self, tensors: list[torch.Tensor], op: str) -> None:
        """All-reduce (sum) or broadcast from rank 0, in place, in flat buckets of at most BUCKET elements."""
        groups: list[list[torch.Tensor]] = [[]]
        for t in tensors:
            if groups[-1] and sum(x.numel() for x in groups[-1]) + t.numel() > BUCKET:
                groups.append([])
            groups[-1].append(t)
        for group in (g for g in groups if g):
            flat = torch.cat([t.detach().reshape(-1).to(self.device, torch.float32) for t in group])
            with self.collective(op):
                if op == "parameter broadcast":
                    dist.broadcast(flat, 0)
                else:
                    dist.all_reduce(flat)
            for t, piece in zip(group, flat.split([t.numel() for t in group])):
                t.copy_(piece.view_as(t))

    def sum_grads(self, params: list[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
        """Sum the gradients of ``params`` that have one (the same set on every rank: all train the same task
        this step) and ``loss`` over the ranks; returns the summed loss."""
        if self.world == 1:
            return loss
        loss = loss.detach().reshape(1).clone()
        self._reduce([p.grad for p in params if p.grad is not None] + [loss], "gradient all-reduce")
        return loss[0]

    @torch.no_grad()
    def broadcast_(self, params: list[torch.nn.Parameter]) -> None:
        """Rank 0's values of ``params`` on every rank (identical replicas whatever each rank initialised)."""
        if self.world > 1:
            self._reduce(list(params), "parameter broadcast")

    def sum_floats(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over the ranks (float64)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        with self.collective("validation all-reduce"):
            dist.all_reduce(t)
        return t.tolist()

    def read_on_main(self, path: Path) -> bytes | None:
        """The bytes of ``path`` as rank 0 reads it, on every rank (None if rank 0 has no such file): only
        rank 0's node needs to see ``--out`` (checkpoints are written by rank 0 alone)."""
        data = path.read_bytes() if self.main and path.is_file() else None
        if self.world == 1:
            return data
        n = torch.tensor([-1 if data is None else len(data)], dtype=torch.int64, device=self.device)
        with self.collective(f"reading {path.name} from rank 0"):
            dist.broadcast(n, 0)
            if int(n) <= 0:
                return None if int(n) < 0 else b""
            buf = torch.empty(int(n), dtype=torch.uint8)
            if self.main:
                buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            buf = buf.to(self.device)
            dist.broadcast(buf, 0)
        return buf.cpu().numpy().tobytes()

    def barrier(self, what: str) -> None:
        if self.world > 1:
            with self.collective(what):
                dist.barrier()

    def fault_point(self, step: int) -> None:
        """The test hook of FAULT_ENV: this rank dies (or hangs) as a killed (stopped) process would."""
        parts = os.environ.get(FAULT_ENV, "").split(":")
        if parts[:2] == [str(self.rank), str(step)]:
            os.kill(os.getpid(), signal.SIGSTOP if parts[2:] == ["stop"] else signal.SIGKILL)


LOCAL = Dist()


def precision_name(dtype: torch.dtype) -> str:
    return "bf16 autocast" if dtype == torch.bfloat16 else "fp32"


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r}: expected an integer (torchrun sets it)") from None


def pick_device(choice: str, local_rank: int) -> torch.device:
    """``--device``: auto = this process's CUDA device (LOCAL_RANK) when CUDA is available, else the CPU."""
    if choice not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {choice!r}")
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise ConfigError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    if choice == "cpu" or not cuda:
        return torch.device("cpu")
    n = torch.cuda.device_count()
    if local_rank >= n:
        raise ConfigError(f"LOCAL_RANK {local_rank}: this node has {n} CUDA device(s); start at most {n} per node")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo's flags): there
    bf16 autocast runs the matmuls of training at several times fp32's rate; elsewhere it is emulated and slower."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(choice: str, device: torch.device) -> torch.dtype:
    """``--precision``: auto = bf16 autocast on a CUDA device that supports it and on a CPU with native bf16
    (:func:`cpu_has_bf16`), or what ``accelerate config`` chose (ACCELERATE_MIXED_PRECISION bf16/no); fp32
    otherwise. Weights, gradients and optimizer state stay fp32 either way."""
    if choice not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {choice!r}")
    bf16_ok = device.type == "cpu" or torch.cuda.is_bf16_supported()
    if choice == "auto":
        native = cpu_has_bf16() if device.type == "cpu" else bf16_ok
        accelerate = os.environ.get("ACCELERATE_MIXED_PRECISION", "").lower()
        choice = {"bf16": "bf16", "no": "fp32"}.get(accelerate, "bf16" if native else "fp32")
        choice = choice if bf16_ok else "fp32"
    if choice == "bf16" and not bf16_ok:
        raise ConfigError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bfloat16")
    return torch.bfloat16 if choice == "bf16" else torch.float32


def join_group(ctx: Dist) -> None:
    """Join the launcher's process group (the rendezvous address comes from the environment)."""
    backend = "nccl" if ctx.device.type == "cuda" else "gloo"
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        dist.init_process_group(
            backend, rank=ctx.rank, world_size=ctx.world, timeout=datetime.timedelta(seconds=ctx.timeout_s)
        )
    except (RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world}: cannot join the {backend} group at {where}: {first}"
        ) from None


@contextlib.contextmanager
def launch(device: str = "auto", precision: str = "auto", timeout_s: float = 600.0) -> Iterator[Dist]:
    """This process's :class:`Dist`, joining (and on exit leaving) the launcher's process group if there is
    one to join; a group the caller already initialised (e.g. by ``accelerate.Accelerator()``) is reused."""
    world, rank = env_int("WORLD_SIZE", 1), env_int("RANK", 0)
    if not (0 <= rank < world):
        raise ConfigError(f"RANK={rank} and WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE")
    dev = pick_device(device, env_int("LOCAL_RANK", 0))
    ctx = Dist(rank, world, dev, pick_dtype(precision, dev), float(timeout_s))
    own = world > 1 and not dist.is_initialized()
    if own:
        join_group(ctx)
    try:
        with stop_on_sigterm(ctx):
            yield ctx
    finally:
        if own:
            dist.destroy_process_group()


@contextlib.contextmanager
def stop_on_sigterm(ctx: Dist) -> Iterator[None]:
    """Under a launcher, SIGTERM (torchrun's way of ending the other processes when one fails) becomes a
    DistributedError, so every rank says why it stopped instead of vanishing."""
    import threading

    if ctx.world == 1 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world}: stopped by the launcher (SIGTERM: another process failed)"
        )

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
