"""Check a JSON Lines file: every line an object carrying the given fields.

Usage: python scripts/check_jsonl.py FILE [--fields a,b] [--min N]
Exit status 0 when the file is good, 1 (with the first problem) otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--fields", default="", help="comma-separated fields every record needs")
    parser.add_argument("--min", type=int, default=1, help="fewest records accepted")
    args = parser.parse_args()
    fields = [f for f in args.fields.split(",") if f]

    count = 0
    with open(args.path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                print(f"{args.path}:{lineno}: not JSON ({exc.msg})", file=sys.stderr)
                return 1
            if not isinstance(record, dict):
                print(f"{args.path}:{lineno}: not a JSON object", file=sys.stderr)
                return 1
            missing = [f for f in fields if f not in record]
            if missing:
                print(f"{args.path}:{lineno}: missing field(s) {', '.join(missing)}", file=sys.stderr)
                return 1
            count += 1
    if count < args.min:
        print(f"{args.path}: {count} records, fewer than {args.min}", file=sys.stderr)
        return 1
    print(f"{args.path}: {count} records" + (f", fields {', '.join(fields)} present" if fields else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
