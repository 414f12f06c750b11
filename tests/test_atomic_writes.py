"""No lost work: train refuses to write over other work, export --force and checkpoints survive kill -9,
and what killed runs leave behind is restored or cleaned (issue 18, class "lost work")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgevlm.core import fsutil
from edgevlm.core.errors import ConfigError
from edgevlm.train import checkpoint

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}


def spec(tmp_path, out, **kw):
    from edgevlm.train.api import TrainSpec

    base = dict(steps=2, batch_size=2, eval_every=2, save_every=1, max_len=48, progress=False)
    return TrainSpec(tasks=kw.pop("tasks", ["nlg"]), out=out, **{**base, **kw})


def test_train_refuses_non_empty_out_and_force_keeps_other_tasks(tmp_path):
    from edgevlm.train.api import train

    out = tmp_path / "out"
    train(spec(tmp_path, out, tasks=["mt"]))
    mt_weights = (out / "mt" / "adapter.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"--out .*out: is not empty \(pass --force"):
        train(spec(tmp_path, out))
    train(spec(tmp_path, out, force=True))
    assert (out / "nlg" / "adapter.json").is_file()
    assert (out / "mt" / "adapter.safetensors").read_bytes() == mt_weights  # another task's adapter untouched


def test_resume_beyond_steps_is_refused(tmp_path):
    from edgevlm.train.api import train

    out = tmp_path / "out"
    (out / "x").mkdir(parents=True)  # not empty: only --resume may continue here
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        train(spec(tmp_path, out, resume=True))
    checkpoint.publish(out, lambda d: (d / checkpoint.STATE_TENSORS).write_bytes(b"x"), {"step": 40})
    with pytest.raises(ConfigError, match=r"at step 40, not before --steps 10"):
        train(spec(tmp_path, out, steps=10, eval_every=5, resume=True))


def test_export_out_is_a_file(tmp_path, trained_adapters):
    from edgevlm.export import export_bundle

    f = tmp_path / "afile"
    f.write_text("keep me")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        export_bundle("tiny", [trained_adapters["qa"]], out=f, force=True, progress=False)
    assert f.read_text() == "keep me"


def _kill_loop(code: str, tmp_path: Path, delays: list[float]):
    """Run ``code`` (an endless writer loop) once per delay: wait until this run's own ready marker (argv[2],
    written by the child after its first complete write) exists, then kill -9 it after the delay."""
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(code))
    for k, delay in enumerate(delays):
        ready = tmp_path / f"ready-{k}"
        p = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(ready)], env=ENV)
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline and p.poll() is None:
            time.sleep(0.01)
        assert ready.exists(), "the writer loop never finished a first write"
        time.sleep(delay)
        assert p.poll() is None, "the writer loop died by itself"
        p.send_signal(signal.SIGKILL)
        assert p.wait(10) == -signal.SIGKILL  # killed while writing, not finished
        yield


REPLACE_LOOP = """
    import sys, time
    from pathlib import Path
    from edgevlm.core import fsutil
    target, ready = Path(sys.argv[1]) / "target", Path(sys.argv[2])
    i = int((target / "complete").read_text())  # go on from the last complete directory
    while True:
        i += 1
        tmp = fsutil.make_temp_dir(target)
        for k in range(20):
            (tmp / f"f{k}").write_text(str(i))
        (tmp / "complete").write_text(str(i))
        fsutil.replace_dir(tmp, target)
        ready.touch()
"""


def test_replace_dir_survives_kill_9(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "complete").write_text("0")
    last = 0
    for _ in _kill_loop(REPLACE_LOOP, tmp_path, [0.01, 0.05, 0.1, 0.2, 0.3]):
        fsutil.clean_stale(target)
        n = (target / "complete").read_text()  # the old or a new directory, always complete
        assert all((target / f"f{k}").read_text() == n for k in range(20))
        assert int(n) > last  # this run replaced the directory at least once before it was killed
        last = int(n)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".target.")]  # leftovers cleaned


CHECKPOINT_LOOP = """
    import sys
    from pathlib import Path
    from edgevlm.train import checkpoint
    out, ready = Path(sys.argv[1]) / "run", Path(sys.argv[2])
    found = checkpoint.find(out)
    step = checkpoint.step_of(found) if found else 0  # go on from the last complete checkpoint
    while True:
        step += 1
        write = lambda d: (d / checkpoint.STATE_TENSORS).write_bytes(bytes(200_000))
        checkpoint.publish(out, write, {"step": step})
        ready.touch()
"""


def test_checkpoint_survives_kill_9(tmp_path):
    steps = [0]
    for _ in _kill_loop(CHECKPOINT_LOOP, tmp_path, [0.01, 0.05, 0.1, 0.2]):
        ck = checkpoint.find(tmp_path / "run")
        assert ck == tmp_path / "run" / checkpoint.CHECKPOINT
        steps.append(checkpoint.step_of(ck))
        assert steps[-1] is not None and steps[-1] > steps[-2]  # this run published before it was killed
        assert [p.name for p in (tmp_path / "run").iterdir()] == [checkpoint.CHECKPOINT]


def test_checkpoint_left_by_a_killed_swap_is_found(tmp_path):
    """The issue's case: killed after the new checkpoint was complete but before it was renamed."""
    out = tmp_path / "run"
    checkpoint.publish(out, lambda d: (d / checkpoint.STATE_TENSORS).write_bytes(b"1"), {"step": 1})
    orphan = out / ".checkpoint.tmp-999999999-abc"  # a pid that cannot be running
    orphan.mkdir()
    (orphan / checkpoint.STATE_TENSORS).write_bytes(b"2")
    (orphan / checkpoint.STATE_JSON).write_text(json.dumps({"step": 2}))
    assert checkpoint.step_of(checkpoint.find(out)) == 2
    assert sorted(p.name for p in out.iterdir()) == [checkpoint.CHECKPOINT]
    (out / ".checkpoint.tmp-999999999-def").mkdir()  # half-written by a killed run
    checkpoint.publish(out, lambda d: (d / checkpoint.STATE_TENSORS).write_bytes(b"3"), {"step": 3})
    assert sorted(p.name for p in out.iterdir()) == [checkpoint.CHECKPOINT]  # the next save removes it


PAUSED_EXPORT = """
    import sys, time
    from pathlib import Path
    from edgevlm.apps import cli
    from edgevlm.export import writer
    ready = Path(sys.argv[1])

    def paused(tmp, out, force):  # the new bundle is complete in tmp: say so, then wait for the kill
        assert (tmp / "manifest.json").is_file()
        ready.touch()
        time.sleep(600)

    writer._replace_dir = paused
    sys.exit(cli.main(sys.argv[2:]))
"""


def test_export_force_killed_keeps_a_bundle(tmp_path, trained_adapters, tiny_bundle):
    """kill -9 an ``export --force`` right when its new bundle is complete (the child pauses there and says so):
    --out still loads afterwards, and the temp directory the killed one left is cleaned."""
    import shutil

    from edgevlm.runtime import Runtime

    out, ready = tmp_path / "b", tmp_path / "ready"
    shutil.copytree(tiny_bundle("fp32"), out)
    before = sorted(Runtime.load(out).tasks)
    script = tmp_path / "paused_export.py"
    script.write_text(textwrap.dedent(PAUSED_EXPORT))
    argv = [sys.executable, str(script), str(ready), "export", "--adapter", str(trained_adapters["qa"])]
    p = subprocess.Popen([*argv, "--out", str(out), "--force"], env=ENV, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not ready.exists():
        time.sleep(0.01)
    assert ready.exists(), f"the export never reached its swap (exit {p.poll()})"
    assert list(tmp_path.glob(".b.tmp-*"))  # the complete new bundle, not yet in place
    p.send_signal(signal.SIGKILL)
    assert p.wait(10) == -signal.SIGKILL
    fsutil.clean_stale(out)
    assert sorted(Runtime.load(out).tasks) == before != ["qa"]  # the old bundle, whole
    assert not list(tmp_path.glob(".b.*"))
