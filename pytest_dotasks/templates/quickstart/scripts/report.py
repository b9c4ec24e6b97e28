"""STEP 5: write REPORT.md from the audit, the training log and the evaluation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="REPORT.md")
    args = parser.parse_args()

    audit = json.loads(Path("data/audit.json").read_text(encoding="utf-8"))
    metrics = json.loads(Path("eval/metrics.json").read_text(encoding="utf-8"))
    summary = json.loads(Path("training_logs/summary.json").read_text(encoding="utf-8"))
    model = json.loads(Path("model/weights.json").read_text(encoding="utf-8"))
    ranked = sorted(model["weights"].items(), key=lambda kv: kv[1])
    lines = [
        "# Quickstart report",
        "",
        "A bag-of-words classifier that tells Beethoven's lines from an assistant's.",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| records | {audit['records']} |",
        f"| duplicate rate | {audit['duplicate_rate']:.2%} |",
        f"| label balance | {audit['label_balance']:.2%} |",
        f"| training steps | {summary['steps']} |",
        f"| loss | {summary['first_loss']:.3f} -> {summary['final_loss']:.3f} |",
        f"| Accuracy (held out) | {metrics['accuracy']:.2%} |",
        f"| F1 | {metrics['f1']:.3f} |",
        "",
        "Most Beethoven-like words: " + ", ".join(w for w, _ in reversed(ranked[-5:])),
        "",
        "Most assistant-like words: " + ", ".join(w for w, _ in ranked[:5]),
        "",
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}: accuracy {metrics['accuracy']:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
