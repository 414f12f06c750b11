"""Data-parallel training under torchrun / accelerate launch on this CPU (gloo), against one process.

Each distributed run is a real launcher in a subprocess (its own session, killed whole on a timeout), so a
hang fails the test instead of blocking the suite. The default suite keeps one 2-process run (about 45 s on
this loaded machine); killed / stopped ranks, --resume, --full, two nodes and accelerate launch need two or
three launches each and are ``slow`` (``make test-slow``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgevlm.train.adapters import load_adapter
from edgevlm.train.api import TrainSpec, train
from edgevlm.train.distributed import FAULT_ENV

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # seconds for one launch: a hang fails here instead of blocking the suite
# fp32: these runs compare arithmetic across process layouts to 1e-4 (bf16 autocast is auto on CPUs with native bf16)
COMMON = [
    "--steps",
    "8",
    "--batch-size",
    "2",
    "--max-len",
    "128",
    "--eval-every",
    "4",
    "--seed",
    "3",
    "--precision",
    "fp32",
]


def head_of(launcher: str, procs: int) -> list[str]:
    if launcher == "torchrun":
        return ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
    head = ["-m", "accelerate.commands.launch", "--multi_gpu", f"--num_processes={procs}", "--num_machines=1"]
    return head + ["--mixed_precision=no", "--dynamo_backend=no", "--main_process_port=0"]


def start(head: list[str], out: Path, extra, env: dict | None):
    """``edgevlm train`` under the launcher ``head``, in its own session (to be killed whole)."""
    cmd = [sys.executable, *head, "-m", "edgevlm.apps.cli", "train", *COMMON, "--out", str(out), *extra]
    base = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE", "HF_HOME": str(out.parent)}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    return cmd, subprocess.Popen(cmd, cwd=REPO, env={**base, **(env or {})}, text=True, start_new_session=True, **pipes)


def wait_all(jobs) -> list[tuple[int, str]]:
    """(returncode, output) of every started job; all are killed (launchers and workers) past TIMEOUT."""
    deadline, results = time.monotonic() + TIMEOUT, []
    try:
        for _, proc in jobs:
            text, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((proc.returncode, text))
    except subprocess.TimeoutExpired:
        for _, proc in jobs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        pytest.fail(f"{' '.join(jobs[len(results)][0])} did not finish within {TIMEOUT} s (a hang)")
    return results


def launch(out: Path, *extra: str, procs: int = 2, env: dict | None = None, launcher: str = "torchrun"):
    """``edgevlm train`` under a real launcher with ``procs`` processes; returns (returncode, output, seconds)."""
    t0 = time.monotonic()
    [(rc, text)] = wait_all([start(head_of(launcher, procs), out, extra, env)])
    return rc, text, time.monotonic() - t0


def launch_nodes(outs: list[Path], *extra: str, envs=({}, {})) -> list[tuple[int, str]]:
    """Two "nodes" of one process each (torchrun's static rendezvous, node ranks 0 and 1), each with its own
    --out: a filesystem the nodes do not share."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = ["-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--master-addr=127.0.0.1"]
    return wait_all(
        [start([*head, f"--master-port={port}", f"--node-rank={r}"], outs[r], extra, envs[r]) for r in (0, 1)]
    )


def one_process(out: Path, tasks=("nlg", "mt"), batch_size=4, **kw):
    """The reference: one process, in this interpreter, with the global batch of the 2-process runs."""
    base = dict(steps=8, max_len=128, eval_every=4, seed=3, progress=False, precision="fp32")
    return train(TrainSpec(tasks=list(tasks), out=out, batch_size=batch_size, **{**base, **kw}))


def assert_same_adapters(got_dir: Path, ref_dir: Path, tasks=("nlg", "mt"), atol=1e-5) -> None:
    for task in tasks:
        ref, got = load_adapter(ref_dir / task)[1], load_adapter(got_dir / task)[1]
        assert sorted(got) == sorted(ref)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=atol, err_msg=f"{task}: {k}")
        assert np.abs(ref["adapter.0.up.weight"]).max() > 1e-3, f"{task}: the adapter never trained"


def test_two_processes_train_the_adapters_of_one_process(tmp_path):
    """2 x batch 2 (gloo) == 1 x batch 4: same global batches, same loss normalisation, rank 0 writes."""
    ref = one_process(tmp_path / "one")
    rc, text, _ = launch(tmp_path / "two", "--task", "nlg", "--task", "mt")
    assert rc == 0, text[-3000:]
    assert_same_adapters(tmp_path / "two", tmp_path / "one")
    assert "global batch 4 = 2 per process x 2 process(es) x 1 accumulation step(s); cpu, fp32" in text
    assert text.count("trainable parameters") == 2, "only rank 0 reports (one line per task)"
    assert text.count("validation loss nlg=") == 2, "only rank 0 prints progress (steps 4 and 8)"
    meta = load_adapter(tmp_path / "two" / "nlg")[0]
    assert meta.training["processes"] == 2 and meta.training["batch_size"] == 2
    for task in ("nlg", "mt"):  # the sharded validation sums to the one-process loss
        np.testing.assert_allclose(meta.training["history"][-1][task], ref[task].valid_loss[-1], rtol=1e-5)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["mt", "nlg", "train_summary.json"]


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    """One process, 2 micro-batches of 2 per step == batch 4: the loss is normalised over the global batch."""
    one_process(tmp_path / "big", tasks=("nlg",))
    one_process(tmp_path / "acc", tasks=("nlg",), batch_size=2, grad_accum=2)
    assert_same_adapters(tmp_path / "acc", tmp_path / "big", tasks=("nlg",))
    assert load_adapter(tmp_path / "acc" / "nlg")[0].training["grad_accum"] == 2


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(grad_accum=0), "--grad-accum must be a positive integer"),
        (dict(device="tpu"), "--device must be one of auto, cpu, cuda, got 'tpu'"),
        (dict(precision="fp16"), "--precision must be one of auto, fp32, bf16, got 'fp16'"),
        (dict(dist_timeout=0), "--dist-timeout must be a positive number of seconds"),
    ],
)
def test_spec_rejects_bad_distributed_options(tmp_path, kw, needle):
    from edgevlm.core.errors import ConfigError

    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        TrainSpec(tasks=["nlg"], out=tmp_path, **kw)


def test_precision_follows_device_and_accelerate_config(monkeypatch):
    import torch

    from edgevlm.train import distributed
    from edgevlm.train.distributed import pick_dtype

    cpu = torch.device("cpu")
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(distributed, "cpu_has_bf16", lambda: True)
    assert pick_dtype("auto", cpu) == torch.bfloat16  # native bf16 (AVX512-BF16/AMX): autocast by default
    monkeypatch.setattr(distributed, "cpu_has_bf16", lambda: False)
    assert pick_dtype("auto", cpu) == torch.float32  # emulated bf16 would be slower: fp32 unless asked
    assert pick_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate config` chose
    assert pick_dtype("auto", cpu) == torch.bfloat16 and pick_dtype("fp32", cpu) == torch.float32
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert pick_dtype("auto", cpu) == torch.float32


def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path):
    from edgevlm.train.distributed import cpu_has_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_has_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\nbugs\t\t: avx512_bf16\n")
    assert not cpu_has_bf16(str(info))  # only the flags line counts
    info.write_text("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert cpu_has_bf16(str(info))
    assert not cpu_has_bf16(str(tmp_path / "absent"))


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 and WORLD_SIZE=2: expected 0 <= RANK < WORLD_SIZE"),
        ({"WORLD_SIZE": "two"}, "environment variable WORLD_SIZE='two': expected an integer"),
    ],
)
def test_bad_launcher_environment_is_a_config_error(monkeypatch, env, needle):
    from edgevlm.core.errors import ConfigError
    from edgevlm.train.distributed import launch

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        with launch():
            pass


def test_cli_device_cuda_without_a_gpu_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    cmd = [sys.executable, "-m", "edgevlm.apps.cli", "train", "--task", "nlg", "--device", "cuda"]
    p = subprocess.run([*cmd, "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == (
        "edgevlm train: error: --device cuda: no CUDA device is available here (torch.cuda.is_available() is False)"
    )


@pytest.mark.slow  # two launches (kill, resume) and a reference: about 50 s here per killed rank
@pytest.mark.parametrize("killed", [1, 0])
def test_killed_rank_fails_clearly_and_resume_continues(tmp_path, killed):
    one_process(tmp_path / "one")
    out, other = tmp_path / "two", 1 - killed
    args = ("--task", "nlg", "--task", "mt", "--save-every", "2")
    rc, text, _ = launch(out, *args, env={FAULT_ENV: f"{killed}:5"})  # killed after step 5
    assert rc != 0
    assert "SIGKILL" in text, text[-3000:]  # torchrun's summary names the killed rank
    # the survivor says why it stopped: its all-reduce failed, or torchrun's SIGTERM came first
    assert f"edgevlm train: error: rank {other} of 2: gradient all-reduce failed" in text or (
        f"edgevlm train: error: rank {other} of 2: stopped by the launcher (SIGTERM" in text
    ), text[-3000:]
    if other == 0:  # rank 0 sees the checkpoint it wrote
        assert f"the checkpoint of step 4 is in {out / 'checkpoint'}: run the same command with --resume" in text
    assert (out / "checkpoint" / "state.json").is_file()
    assert not (out / "nlg").exists(), "nothing is written by an interrupted run"
    rc, text, _ = launch(out, *args, "--resume")
    assert rc == 0, text[-3000:]
    assert_same_adapters(out, tmp_path / "one")
    assert not (out / "checkpoint").exists()


@pytest.mark.slow  # the stopped rank is only ended by the launcher's 30 s grace period after the timeout
def test_hung_rank_times_out_with_a_clear_message(tmp_path):
    rc, text, seconds = launch(tmp_path / "x", "--task", "nlg", "--dist-timeout", "5", env={FAULT_ENV: "1:3:stop"})
    assert rc != 0 and seconds < TIMEOUT
    assert "edgevlm train: error: rank 0 of 2: gradient all-reduce failed" in text, text[-3000:]
    assert "within 5 s (--dist-timeout)" in text


@pytest.mark.slow  # full fine-tuning of the tiny backbone on 2 processes and one: about 60 s here
def test_full_finetuning_on_two_processes_matches_one(tmp_path):
    from safetensors.numpy import load_file

    one_process(tmp_path / "one", tasks=("nlg",), full=True)
    rc, text, _ = launch(tmp_path / "two", "--task", "nlg", "--full")
    assert rc == 0, text[-3000:]
    weights = [
        load_file(str(d / "nlg" / "backbone" / "model.safetensors")) for d in (tmp_path / "one", tmp_path / "two")
    ]
    # Adam moves a weight whose gradient is near its eps by ~lr whatever the gradient's size, so summation-order
    # noise shows there: 5e-5 is about 1 % of the furthest any weight can move (lr 5e-4 x 8 steps).
    for k in weights[0]:
        np.testing.assert_allclose(weights[1][k], weights[0][k], rtol=1e-4, atol=5e-5, err_msg=k)
    embeddings = [load_adapter(d / "nlg")[1]["task_embeddings"] for d in (tmp_path / "one", tmp_path / "two")]
    np.testing.assert_allclose(embeddings[1], embeddings[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # accelerate launch (it starts torchrun itself): about 30 s here
def test_accelerate_launch_trains_the_same_adapters(tmp_path):
    one_process(tmp_path / "one")
    rc, text, _ = launch(tmp_path / "acc", "--task", "nlg", "--task", "mt", launcher="accelerate")
    assert rc == 0, text[-3000:]
    assert_same_adapters(tmp_path / "acc", tmp_path / "one")


@pytest.mark.slow  # two 2-node launches and a reference: about 70 s here
def test_two_nodes_without_a_shared_filesystem_resume_from_rank_0(tmp_path):
    """Rank 0's node alone holds --out: the checkpoint is read there and broadcast; the other node writes nothing."""
    one_process(tmp_path / "one")
    outs = [tmp_path / "node0", tmp_path / "node1"]
    args = ("--task", "nlg", "--task", "mt", "--save-every", "2")
    results = launch_nodes(outs, *args, envs=({}, {FAULT_ENV: "1:5"}))
    assert all(rc != 0 for rc, _ in results), results[0][1][-2000:]
    assert (outs[0] / "checkpoint" / "state.json").is_file() and not outs[1].exists()
    results = launch_nodes(outs, *args, "--resume")
    assert [rc for rc, _ in results] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    assert_same_adapters(outs[0], tmp_path / "one")
    assert "trainable parameters" in results[0][1] and "trainable parameters" not in results[1][1]
    assert not outs[1].exists(), "only rank 0 writes"
