"""STEP 2: audit the dataset and write its numbers to a JSON file.

The numbers (duplicate rate, label balance, ...) are what the plan's
``metrics:`` thresholds read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--out", default="data/audit.json")
    args = parser.parse_args()

    texts: list[str] = []
    labels: list[int] = []
    for name in args.files:
        with open(name, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    rec = json.loads(line)
                    texts.append(rec["text"])
                    labels.append(int(rec["label"]))
    n = len(texts)
    positives = sum(labels)
    audit = {
        "records": n,
        "duplicate_rate": round((n - len(set(texts))) / n, 4),
        "label_balance": round(min(positives, n - positives) / n, 4),
        "mean_words": round(sum(len(t.split()) for t in texts) / n, 2),
        "empty_rate": round(sum(1 for t in texts if not t.strip()) / n, 4),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(audit, indent=2) + "\n", encoding="utf-8")
    print("audit: " + ", ".join(f"{k}={v}" for k, v in audit.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
