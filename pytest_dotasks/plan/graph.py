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


def chains(needs: Mapping[int, Iterable[int]], order: Iterable[int]) -> dict[int, int]:
    """Step -> first step of its chain: the units that xdist workers take whole, in file order.

    A step continues the chain of its one need when it is that need's only dependent (a line of
    steps, each waiting for the last, gains nothing from another worker); every other step starts
    a chain, so steps that can run at once (``[P]`` tasks, independent STEP chains) can go to
    different workers and wait for each other there (``run.board``). Waiting is safe only for
    needs earlier in the file: a connected part with a need that points forward stays one chain,
    on one worker, as before.
    """
    position = {n: i for i, n in enumerate(order)}
    deps = {n: [d for d in needs.get(n, ()) if d in position] for n in position}
    dependents: dict[int, int] = {}
    for n in position:
        for d in deps[n]:
            dependents[d] = dependents.get(d, 0) + 1
    whole = components(deps)
    forward = {whole[n] for n in position if any(position[d] > position[n] for d in deps[n])}
    out: dict[int, int] = {}
    for n in sorted(position, key=position.__getitem__):
        if whole[n] in forward:
            out[n] = whole[n]
        elif len(deps[n]) == 1 and dependents.get(deps[n][0]) == 1:
            out[n] = out[deps[n][0]]
        else:
            out[n] = n
    return out
