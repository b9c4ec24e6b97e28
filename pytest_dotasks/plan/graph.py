"""The dependency graph of a plan: chains that can run apart."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def components(needs: Mapping[int, Iterable[int]]) -> dict[int, int]:
    """Step -> smallest step number of its connected component (edges undirected)."""
    parent = {n: n for n in needs}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for n, deps in needs.items():
        for d in deps:
            if d in parent:
                a, b = find(n), find(d)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {n: find(n) for n in needs}


def dependents(needs: Mapping[int, Iterable[int]], step: int) -> set[int]:
    """Every step that needs ``step``, directly or not."""
    out: set[int] = set()
    frontier = [step]
    while frontier:
        cur = frontier.pop()
        for n, deps in needs.items():
            if cur in deps and n not in out:
                out.add(n)
                frontier.append(n)
    return out
