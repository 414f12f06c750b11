"""``edgevlm serve`` over a bundle holding a bottleneck task and a peft LoRA task (issue 30): each task answers
over HTTP what ``edgevlm run --task`` prints for the same prompt, and two concurrent requests of the two tasks,
decoded in one batch, each get their own answer. Also the server's start-up lines (issue 28 item 5): loading,
the start block naming both methods, warm-up, then the address on stdout."""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("uvicorn", reason="edgevlm serve needs uvicorn + starlette (pip install 'edgevlm[serve]')")
pytest.importorskip("peft")

from test_serve import TIMEOUT, _call, _until  # noqa: E402

from edgevlm.apps.cli import main  # noqa: E402
from edgevlm.apps.serve import BackgroundServer  # noqa: E402

PROMPTS = {"nlg": "name[Aromi], food[Chinese], area[city centre]", "lo": "the cat sat on the mat"}
N = 10


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_dir):
    from mixed_helpers import random_adapter_dirs
    from test_lora_peft import make_peft_lora

    from edgevlm.export import export_bundle

    root = tmp_path_factory.mktemp("serve-lora")
    lora = make_peft_lora(tiny_dir, root / "peft", "gpt2")
    nlg = [d for d in random_adapter_dirs(tiny_dir, root / "adapters") if d.name == "nlg"]
    return export_bundle(str(tiny_dir), nlg, "fp32", out=root / "b", progress=False, lora=[f"lo={lora}"])


@pytest.fixture(scope="module")
def server(bundle):
    with BackgroundServer(bundle, threads=1, max_batch=4, max_queue=8) as s:
        yield s


def run_cli(bundle, task: str, text: str, capsys) -> str:
    """What ``edgevlm run BUNDLE --task TASK`` prints on stdout (one line)."""
    assert main(["run", str(bundle), "--task", task, "--threads", "1", "--max-new-tokens", str(N), text]) == 0
    return capsys.readouterr().out


def complete(url: str, task: str, text: str) -> str:
    status, _, body = _call(url, "/v1/completions", {"model": task, "prompt": text, "max_tokens": N})
    assert status == 200, body
    return json.loads(body)["choices"][0]["text"]


@pytest.mark.parametrize("task", ["nlg", "lo"])
def test_each_task_answers_over_http_what_run_prints(server, bundle, capsys, task):
    want = run_cli(bundle, task, PROMPTS[task], capsys)
    assert want.strip()
    assert complete(server.url, task, PROMPTS[task]) + "\n" == want
    assert task in [m["id"] for m in json.loads(_call(server.url, "/v1/models", method="GET")[2])["data"]]


def test_two_tasks_in_one_batch_each_get_their_own_answer(server, bundle, capsys):
    rt = server.service.rt
    assert rt.manifest.tasks["lo"].method == "lora" and rt.manifest.tasks["nlg"].method == "adapter"
    text = PROMPTS["lo"]  # one prompt for both tasks: the answers can only differ by the task's adapter
    want = {t: run_cli(bundle, t, text, capsys).rstrip("\n") for t in ("nlg", "lo")}
    assert want["nlg"] != want["lo"] != rt.generate(text, max_new_tokens=N)  # neither is the plain backbone
    sched = server.service.scheduler
    sched.peak_rows = 0
    with ThreadPoolExecutor(2) as pool:
        with sched.hold():  # both requests queue before the first step: they are decoded together
            futures = {t: pool.submit(complete, server.url, t, text) for t in ("lo", "nlg")}
            _until(lambda: sched.load == (0, 2), "2 queued requests")
        got = {t: f.result(TIMEOUT) for t, f in futures.items()}
    assert got == want and sched.peak_rows == 2


def start_up(bundle, *flags: str) -> tuple[str, list[str]]:
    """(the line announced on stdout, stderr's lines) of ``edgevlm serve`` started, once it listens, stopped."""
    cmd = [sys.executable, "-m", "edgevlm.apps.cli", "serve", str(bundle), "--port", "0", "--threads", "1", *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        announced = proc.stdout.readline() if ready else ""
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=TIMEOUT)
    assert re.match(r"edgevlm serve: .* on http://127\.0\.0\.1:\d+ \(models: base, nlg, lo; fp32; ", announced), err
    return announced, err.splitlines()


def test_serve_start_up_lines(bundle):
    """The real command: stderr says loading, the start block (both methods), warm-up; stdout the address."""
    _, lines = start_up(bundle)
    assert lines[0] == f"edgevlm serve: loading {bundle} (checksums, graph, adapters) ..."
    assert lines[1].startswith(f"edgevlm serve: bundle: {bundle} (loaded in ")
    assert lines[3] == "  tasks: lo (lora, rank 4), nlg (adapter, bottleneck 10)"
    assert re.search(r"graph\+weights \d+\.\d MB on disk .*process (peak )?RSS \d+\.\d MB after load", lines[5])
    assert lines[6] == "edgevlm serve: warming up (one step of the plain backbone and of 2 task(s)) ..."
    assert re.fullmatch(r"edgevlm serve: warm in \d+\.\d\d s", lines[7])


def test_serve_quiet_prints_only_the_address(bundle):
    assert start_up(bundle, "--quiet")[1] == []
