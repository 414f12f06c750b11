"""Cross-check edgevlm.train.e2e_metrics / meteor against the reference implementations on E2E dev rows.

Needs, in your own venv only (not the project's lock): ``pycocoevalcap`` (coco-caption's ROUGE-L and
CIDEr, Meteor 1.5's jar with its paraphrase table, Stanford CoreNLP 3.4.1's PTBTokenizer), Java, and
the locked ``sacrebleu`` and ``nltk``. Reads ../shared/data/e2e/devset.csv. Two systems per run:
``ref0`` (each MR's first reference as the output, the others as references) and ``ref0-drop``
(the same with every fourth word dropped). Writes results/compare.json.

    python experiments/e2e_metrics/compare.py [--mrs 120]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgevlm.train import e2e_metrics as em
from edgevlm.train import meteor as mt

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data" / "e2e" / "devset.csv"


def coco_dir() -> Path:
    import pycocoevalcap

    return Path(pycocoevalcap.__path__[0])


def load(n_mrs: int) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    with open(DATA, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            groups.setdefault(row["mr"], []).append(row["ref"])
    return [r for r in groups.values() if len(r) >= 2][:n_mrs]


def systems(groups: list[list[str]]) -> dict[str, tuple[list[str], list[list[str]]]]:
    refs = [g[1:] for g in groups]
    drop = [" ".join(w for i, w in enumerate(g[0].split()) if i % 4 != 3) for g in groups]
    return {"ref0": ([g[0] for g in groups], refs), "ref0-drop": (drop, refs)}


def stanford_tokens(lines: list[str]) -> list[list[str]]:
    """coco-caption's PTBTokenizer pipeline: CoreNLP -preserveLines -lowerCase, then its punctuation filter."""
    d = coco_dir() / "tokenizer"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(x.replace("\n", " ") for x in lines))
    cmd = ["java", "-cp", str(d / "stanford-corenlp-3.4.1.jar"), "edu.stanford.nlp.process.PTBTokenizer"]
    out = subprocess.run([*cmd, "-preserveLines", "-lowerCase", f.name], capture_output=True, check=True)
    os.unlink(f.name)
    punct = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
    return [[w for w in ln.rstrip().split(" ") if w and w not in punct] for ln in out.stdout.decode().split("\n")]


def meteor_jar(hyps: list[str], refs: list[list[str]], extra: list[str]) -> float:
    """Meteor 1.5 over stdio as coco-caption drives it (SCORE lines, then one EVAL line; its aggregate)."""
    jar = coco_dir() / "meteor" / "meteor-1.5.jar"
    cmd = ["java", "-Xmx2G", "-jar", str(jar), "-", "-", "-stdio", "-l", "en", "-norm", *extra]
    p = subprocess.Popen(cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stats = []
    for h, r in zip(hyps, refs):
        p.stdin.write(" ||| ".join(["SCORE", *r, h.replace("|||", "")]) + "\n")
        p.stdin.flush()
        stats.append(p.stdout.readline().strip())
    p.stdin.write(" ||| ".join(["EVAL", *stats]) + "\n")
    p.stdin.flush()
    for _ in hyps:
        p.stdout.readline()
    score = float(p.stdout.readline())
    p.kill()
    return 100.0 * score


def coco_rouge_cider(hyps: list[list[str]], refs: list[list[list[str]]]) -> tuple[float, float]:
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: [" ".join(t) for t in r] for i, r in enumerate(refs)}
    res = {i: [" ".join(h)] for i, h in enumerate(hyps)}
    return 100.0 * Rouge().compute_score(gts, res)[0], float(Cider().compute_score(gts, res)[0])


def mteval_side(hyps: list[str], refs: list[list[str]]) -> dict:
    """Ours against sacrebleu (mteval-v13a's tokeniser and smoothing, lower-cased) and nltk (BLEU, NIST)."""
    import sacrebleu
    from nltk.translate.bleu_score import corpus_bleu
    from nltk.translate.nist_score import corpus_nist

    k = max(len(r) for r in refs)
    streams = [[r[i] if i < len(r) else None for r in refs] for i in range(k)]
    tok_h = [em.mteval_tokens(h) for h in hyps]
    tok_r = [[em.mteval_tokens(x) for x in r] for r in refs]
    first = [[r[0]] for r in refs]
    return {
        "bleu_ours": em.bleu(hyps, refs),
        "bleu_sacrebleu_lc": sacrebleu.corpus_bleu(hyps, streams, lowercase=True).score,
        "bleu_nltk_mteval_tokens": 100 * corpus_bleu(tok_r, tok_h),
        "nist_ours": em.nist(hyps, refs),
        "nist_nltk_mteval_tokens": corpus_nist(tok_r, tok_h, 5),
        "nist_ours_single_ref": em.nist(hyps, first),
        "nist_nltk_single_ref": corpus_nist([[t[0]] for t in tok_r], tok_h, 5),
    }


def coco_side(hyps: list[str], refs: list[list[str]]) -> dict:
    """Ours against coco-caption (ROUGE-L, CIDEr) and Meteor 1.5, on our tokens and on Stanford's."""
    ours_h, ours_r = [em.ptb_tokens(h) for h in hyps], [[em.ptb_tokens(x) for x in r] for r in refs]
    flat = stanford_tokens(hyps + [x for r in refs for x in r])
    st_h, it = flat[: len(hyps)], iter(flat[len(hyps) :])
    st_r = [[next(it) for _ in r] for r in refs]
    join_h, join_r = [" ".join(t) for t in ours_h], [[" ".join(t) for t in r] for r in ours_r]
    out = {
        "ptb_sentences_identical_pct": 100.0 * sum(a == b for a, b in zip(ours_h + sum(ours_r, []), flat)) / len(flat)
    }
    out["rougeL_ours"], out["cider_ours"] = em.rouge_l(hyps, refs), em.cider_d(hyps, refs)
    out["rougeL_coco_our_tokens"], out["cider_coco_our_tokens"] = coco_rouge_cider(ours_h, ours_r)
    out["rougeL_coco_stanford"], out["cider_coco_stanford"] = coco_rouge_cider(st_h, st_r)
    out["meteor_ours"] = mt.meteor(join_h, join_r)
    same = ["-m", "exact stem", "-w", "1.0 0.6", "-p", "0.85 0.2 0.6 0.5"]
    out["meteor_jar_exact_stem_delta0.5_our_tokens"] = meteor_jar(join_h, join_r, same)
    out["meteor_jar_exact_stem_our_tokens"] = meteor_jar(join_h, join_r, ["-m", "exact stem"])
    sj_h, sj_r = [" ".join(t) for t in st_h], [[" ".join(t) for t in r] for r in st_r]
    out["meteor_jar_full_1.5_stanford"] = meteor_jar(sj_h, sj_r, [])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mrs", type=int, default=120)
    args = ap.parse_args()
    if not DATA.is_file():
        sys.exit(f"skipped: {DATA} not found (see ../shared/data/README.md)")
    groups, res = load(args.mrs), {}
    for name, (hyps, refs) in systems(groups).items():
        t0 = time.time()
        t1 = time.perf_counter()
        em.e2e_scores(hyps, refs)
        ours_s = time.perf_counter() - t1
        res[name] = {**mteval_side(hyps, refs), **coco_side(hyps, refs), "rows": len(hyps)}
        res[name]["e2e_scores_seconds"] = round(ours_s, 2)
        res[name]["seconds"] = round(time.time() - t0, 1)
        print(name, json.dumps(res[name], indent=1), flush=True)
    meta = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    meta["cpu"] = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if "model name" in ln), "?")
    meta["load_1min_at_end"] = os.getloadavg()[0]
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "compare.json").write_text(json.dumps({**meta, "systems": res}, indent=1) + "\n")


if __name__ == "__main__":
    main()
