"""STEP 1: write a small, seeded "who said it?" dataset as JSON Lines.

Each record is one short line said either by Beethoven (label 1) or by a
polite assistant (label 0). Lines share common words, a third of them borrow
a word from the other speaker, and a few labels are flipped on purpose, so a
model can learn the task well but not perfectly.

Only ``random.Random(seed).random()`` is used: its sequence is the same on
every Python version, so the data (and every number after it) is too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from random import Random

BEETHOVEN = ["symphony", "sonata", "vienna", "deafness", "fate", "thunder", "piano", "haydn",
             "counterpoint", "storm", "genius", "eroica", "patron", "silence", "fury"]
ASSISTANT = ["certainly", "happy", "assist", "information", "summary", "recommend", "overview",
             "glad", "options", "details", "steps", "helpful", "resources", "clarify", "sure"]
COMMON = ["i", "you", "the", "music", "today", "think", "about", "question", "answer", "that",
          "is", "my", "a", "of", "what", "time", "work", "life", "feel", "world"]


def pick(rng: Random, words: list[str]) -> str:
    return words[int(rng.random() * len(words))]


def make_record(rng: Random, index: int) -> dict[str, object]:
    label = 1 if rng.random() < 0.5 else 0
    own, other = (BEETHOVEN, ASSISTANT) if label else (ASSISTANT, BEETHOVEN)
    words = [pick(rng, COMMON) for _ in range(6 + int(rng.random() * 5))]
    words += [pick(rng, own) for _ in range(2 + int(rng.random() * 2))]
    if rng.random() < 0.3:  # borrowed vocabulary makes some lines ambiguous
        words.append(pick(rng, other))
    keyed = sorted((rng.random(), w) for w in words)  # shuffle with random() only
    text = " ".join(w for _, w in keyed)
    if rng.random() < 0.04:  # label noise: nobody reaches 100 %
        label = 1 - label
    return {"id": index, "text": text, "label": label, "speaker": "beethoven" if label else "assistant"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="records in total")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="data", help="output folder")
    args = parser.parse_args()

    rng = Random(args.seed)
    records = [make_record(rng, i) for i in range(args.n)]
    cut = int(len(records) * (1 - args.test_fraction))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.jsonl", records[:cut]), ("test.jsonl", records[cut:])):
        with open(out / name, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(rec) + "\n" for rec in part)
        print(f"wrote {out / name}: {len(part)} records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
