"""STEP 4: evaluate the trained model on held-out data; write eval/metrics.json."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model/weights.json")
    parser.add_argument("--data", default="data/test.jsonl")
    parser.add_argument("--out", default="eval/metrics.json")
    args = parser.parse_args()

    model = json.loads(Path(args.model).read_text(encoding="utf-8"))
    weights: dict[str, float] = model["weights"]
    tp = fp = tn = fn = 0
    log_loss = 0.0
    with open(args.data, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            z = model["bias"] + sum(weights.get(w, 0.0) for w in set(rec["text"].lower().split()))
            p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
            label = int(rec["label"])
            log_loss -= math.log(p if label else 1.0 - p)
            if p >= 0.5:
                tp, fp = (tp + 1, fp) if label else (tp, fp + 1)
            else:
                fn, tn = (fn + 1, tn) if label else (fn, tn + 1)
    n = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    metrics = {
        "n": n,
        "accuracy": round((tp + tn) / n, 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "log_loss": round(log_loss / n, 4),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print("eval: " + ", ".join(f"{k}={v}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
