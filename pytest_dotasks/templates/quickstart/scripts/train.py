"""STEP 3: train a bag-of-words logistic regression, in pure Python.

Full-batch gradient descent on the training set. Every ``--log-every`` steps
a line ``step N loss X train_acc Y`` is appended (and flushed) to
``training_logs/loss.txt``: that is the file the plan's ``monitor:`` tails.
If the loss ever becomes NaN or blows up, a ``diverged`` line is written and
the script exits 1, which the plan's ``alert: nan, diverged`` catches.

``--step-delay`` paces the loop (default 10 ms a step, about 3 s in all) so
you can watch the monitor; ``--step-delay 0`` runs flat out.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path


def load(path: str) -> list[tuple[set[str], int]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                rows.append((set(rec["text"].lower().split()), int(rec["label"])))
    return rows


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/train.jsonl")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--l2", type=float, default=0.001)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--step-delay", type=float, default=0.01, help="seconds to pause each step")
    parser.add_argument("--log-dir", default="training_logs")
    parser.add_argument("--out", default="model/weights.json")
    args = parser.parse_args()

    rows = load(args.data)
    vocab = sorted({w for words, _ in rows for w in words})
    weights = dict.fromkeys(vocab, 0.0)
    bias = 0.0
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    first_loss = final_loss = float("nan")
    with open(log_dir / "loss.txt", "w", encoding="utf-8") as log:
        for step in range(1, args.steps + 1):
            grad = dict.fromkeys(vocab, 0.0)
            grad_bias = loss = 0.0
            correct = 0
            for words, label in rows:
                p = sigmoid(bias + sum(weights[w] for w in words))
                loss -= math.log(p if label else 1.0 - p) if 0.0 < p < 1.0 else 0.0
                correct += (p >= 0.5) == bool(label)
                err = p - label
                grad_bias += err
                for w in words:
                    grad[w] += err
            n = len(rows)
            loss /= n
            if step == 1:
                first_loss = loss
            final_loss = loss
            if math.isnan(loss) or loss > 10 * first_loss:
                log.write(f"diverged at step {step}: loss {loss}\n")
                log.flush()
                print(f"training diverged at step {step}")
                return 1
            bias -= args.lr * grad_bias / n
            for w in vocab:
                weights[w] -= args.lr * (grad[w] / n + args.l2 * weights[w])
            if step % args.log_every == 0 or step == 1:
                log.write(f"step {step} loss {loss:.6f} train_acc {correct / n:.4f}\n")
                log.flush()
            if args.step_delay:
                time.sleep(args.step_delay)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bias": bias, "weights": weights, "steps": args.steps}, indent=1) + "\n",
                   encoding="utf-8")
    summary = {"steps": args.steps, "first_loss": round(first_loss, 6), "final_loss": round(final_loss, 6),
               "loss_ratio": round(final_loss / first_loss, 4)}
    (log_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"trained {args.steps} steps: loss {first_loss:.4f} -> {final_loss:.4f}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
