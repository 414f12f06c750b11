"""Server soak: concurrent mixed-task requests at and beyond ``--max-queue`` against ``edgevlm serve`` in its own
process on 127.0.0.1, bounded in time (``--duration``) and count (``--max-requests``).

More client threads than ``max_batch + max_queue`` send requests back to back (completions and chat completions,
streamed and not, every task and the plain backbone, greedy, 4-24 new tokens, seeded order). Checked: no 5xx;
every 503 carries ``Retry-After``; every 200's text equals the serial answer of ``Runtime.generate`` in this
process; the server's RSS (sampled each second) does not grow after warm-up. Clients wait at most 0.1 s after a
503 (not the full ``Retry-After``), so the load stays beyond the queue. Reported: requests/s answered 200,
p50/p99 latency of 200s (streamed: to the last event), 503 share, RSS after a tenth of the run/last/max.

    python -m edgevlm.benchmarks.serve_soak --duration 600 --threads 1
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .common import Report, base_parser, check_threads, run_main, suite_dir
from .fixtures import Workspace, backbone_dir, export, make_adapters

TASKS = ("nlg", "dialogue", "qa")
INPUTS = {
    "nlg": "name[Aromi], eatType[coffee shop], area[city centre]",
    "dialogue": "i like cats . <user> do you have pets ?",
    "qa": "story : tom has a dog . <question> what does tom have ?",
    None: "the cat sat on the",
}


def jobs(n: int, seed: int) -> list[dict]:
    """``n`` request specs (task, tokens, stream, chat), a seeded mix."""
    rnd = random.Random(seed)
    return [
        {"task": rnd.choice([*TASKS, None]), "tokens": rnd.randint(4, 24), "stream": rnd.random() < 0.5,
         "chat": rnd.random() < 0.3}
        for _ in range(n)
    ]  # fmt: skip


def body(job: dict) -> tuple[str, dict]:
    """(path, body) of one request; chat only carries inputs without task tokens (one user message)."""
    text, model = INPUTS[job["task"]], job["task"] or "base"
    b = {"model": model, "max_tokens": job["tokens"], "stream": job["stream"]}
    if job["chat"] and job["task"] in ("nlg", None):
        return "/v1/chat/completions", {**b, "messages": [{"role": "user", "content": text}]}
    return "/v1/completions", {**b, "prompt": text}


def answer(path: str, status: int, raw: str, stream: bool) -> str | None:
    """The text of a 200 (streamed: joined pieces), None otherwise."""
    if status != 200:
        return None
    chat = path.endswith("chat/completions")
    if not stream:
        c = json.loads(raw)["choices"][0]
        return c["message"]["content"] if chat else c["text"]
    events = [json.loads(x[6:]) for x in raw.split("\n\n") if x.startswith("data: {")]
    return "".join((e["choices"][0]["delta"].get("content") or "") if chat else e["choices"][0]["text"] for e in events)


def call(port: int, path: str, b: dict) -> tuple[int, str | None, str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        c.request("POST", path, json.dumps(b), {"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.getheader("Retry-After"), r.read().decode()
    finally:
        c.close()


class Server:
    """``edgevlm serve`` in its own process on a free loopback port."""

    def __init__(self, bundle: Path, threads: int, max_batch: int, max_queue: int):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        opts = ["--threads", str(threads), "--max-batch", str(max_batch), "--max-queue", str(max_queue)]
        self.cmd = [sys.executable, "-m", "edgevlm.apps.cli", "serve", str(bundle), "--port", str(self.port), *opts]

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # the announcement: the port is listening
        if "http://" not in line:
            self.__exit__()
            raise RuntimeError(f"edgevlm serve did not come up: {' '.join(self.cmd)}")
        return self

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def soak(srv: Server, want: dict, specs: list[dict], clients: int, duration: float) -> dict:
    """Run ``specs`` from ``clients`` threads until done or ``duration`` s; per-request records + RSS samples."""
    records, rss, lock, nxt = [], [], threading.Lock(), iter(range(len(specs)))
    stop = time.monotonic() + duration

    def client() -> None:
        while time.monotonic() < stop:
            with lock:
                k = next(nxt, None)
            if k is None:
                return
            path, b = body(specs[k])
            t0 = time.perf_counter()
            status, retry, raw = call(srv.port, path, b)
            text = answer(path, status, raw, b["stream"])
            rec = {"status": status, "s": time.perf_counter() - t0, "retry_after": retry, "stream": b["stream"]}
            rec["equal"] = None if text is None else text == want[(specs[k]["task"], specs[k]["tokens"])]
            with lock:
                records.append(rec)
            if status == 503:
                time.sleep(min(float(retry or 0), 0.1))  # back off briefly, staying beyond the queue

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss.append(srv.rss())
        for t in threads:
            t.join(1.0 / len(threads))
    return {"records": records, "rss": rss, "wall_s": time.perf_counter() - t0}


def summary(run: dict) -> dict:
    recs, rss = run["records"], run["rss"]
    ok = sorted(r["s"] for r in recs if r["status"] == 200)
    busy = [r for r in recs if r["status"] == 503]

    def pct(p: float) -> float | None:
        return round(ok[min(len(ok) - 1, int(p * len(ok)))] * 1000, 1) if ok else None

    return {
        "requests": len(recs),
        "status_counts": {
            str(s): sum(1 for r in recs if r["status"] == s) for s in sorted({r["status"] for r in recs})
        },
        "server_errors_5xx_not_503": sum(1 for r in recs if r["status"] >= 500 and r["status"] != 503),
        "busy_503_share": round(len(busy) / max(1, len(recs)), 3),
        "busy_without_retry_after": sum(1 for r in busy if not r["retry_after"]),
        "answers_equal_serial": sum(1 for r in recs if r["equal"]),
        "answers_differing": sum(1 for r in recs if r["equal"] is False),
        "ok_per_s": round(len(ok) / run["wall_s"], 2),
        "latency_ms_p50": pct(0.5),
        "latency_ms_p99": pct(0.99),
        # after a tenth of the run (allocator arenas and caches warmed up), at the end, and the peak
        "rss_mb_warm_last_max": [round(x / 2**20, 1) for x in (rss[len(rss) // 10], rss[-1], max(rss))]
        if rss
        else None,
        "wall_s": round(run["wall_s"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = base_parser("serve_soak")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load at most (default 600)")
    p.add_argument("--max-requests", type=int, default=20000, help="requests at most (default 20000)")
    p.add_argument("--max-batch", type=int, default=4)
    p.add_argument("--max-queue", type=int, default=4)
    p.add_argument("--clients", type=int, default=12, help="client threads (default 12: beyond batch + queue)")
    p.add_argument("--work", help="keep the built bundle here and reuse it")
    args = p.parse_args(argv)
    threads = check_threads(args.threads or 1)
    duration = 20.0 if args.quick else args.duration
    report, ws = Report("serve_soak", threads, args.quick), Workspace(args.work)
    try:
        bb = backbone_dir(ws, "tiny")
        ad = ws.get("soak-adapters", lambda o: make_adapters(bb, o, {t: None for t in TASKS}))
        bundle = ws.get("soak-int8", lambda o: export(bb, [ad / t for t in TASKS], "int8", o))
        from edgevlm.runtime import Runtime

        rt = Runtime.load(bundle, threads=threads)
        specs = jobs(args.max_requests, seed=0)
        want = {(j["task"], j["tokens"]): None for j in specs}
        want = {k: rt.generate(INPUTS[k[0]], task=k[0], max_new_tokens=k[1]) for k in want}
        with Server(bundle, threads, args.max_batch, args.max_queue) as srv:
            run = soak(srv, want, specs, args.clients, duration)
        s = summary(run)
        report.add(f"soak: {json.dumps(s)}", **s, clients=args.clients, max_batch=args.max_batch,
                   max_queue=args.max_queue, duration_s=duration)  # fmt: skip
        out = report.write(suite_dir(args.out, "serve_soak"), "```\n" + json.dumps(s, indent=2) + "\n```\n")
        print(f"results: {out}")
        return 0 if s["server_errors_5xx_not_503"] == 0 and s["answers_differing"] == 0 else 1
    finally:
        ws.close()


if __name__ == "__main__":
    sys.exit(run_main(main))
