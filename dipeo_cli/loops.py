"""Where a graph's loops are, found without recursion (10,000-node chains compile): strongly
connected components (Tarjan, iterative) tell which arrows stay inside a loop, and the back edges
of a depth-first walk from the start nodes tell which arrows close a loop (a node's first
execution does not wait for those).
"""

from __future__ import annotations

from dipeo_cli.diagram.model import DiagramArrow


def strongly_connected(order: list[str], successors: dict[str, list[str]]) -> dict[str, int]:
    """Tarjan's algorithm without recursion: node id -> component number."""
    index_of: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    components = 0
    for root in order:
        if root in index_of:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_pos = work.pop()
            if child_pos == 0:
                index_of[node] = lowlink[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = successors[node]
            descended = False
            while child_pos < len(children):
                child = children[child_pos]
                child_pos += 1
                if child not in index_of:
                    work.append((node, child_pos))
                    work.append((child, 0))
                    descended = True
                    break
                if child in on_stack:
                    lowlink[node] = min(lowlink[node], index_of[child])
            if descended:
                continue
            if lowlink[node] == index_of[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = components
                    if member == node:
                        break
                components += 1
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
    return component


def back_edges(order: list[str], roots: list[str], arrows: list[DiagramArrow]) -> set[int]:
    """Indexes of the arrows that close a loop: back edges of a depth-first walk that starts
    from the start nodes (then from any node not reached), without recursion."""
    out: dict[str, list[int]] = {nid: [] for nid in order}
    for index, arrow in enumerate(arrows):
        out[arrow.source].append(index)
    visited: set[str] = set()
    on_path: set[str] = set()
    back: set[int] = set()
    for root in [*roots, *order]:
        if root in visited:
            continue
        visited.add(root)
        on_path.add(root)
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, pos = work[-1]
            edges = out[node]
            if pos == len(edges):
                work.pop()
                on_path.discard(node)
                continue
            work[-1] = (node, pos + 1)
            index = edges[pos]
            child = arrows[index].target
            if child in on_path:
                back.add(index)
            elif child not in visited:
                visited.add(child)
                on_path.add(child)
                work.append((child, 0))
    return back


def downstream_of(seeds: set[str], successors: dict[str, list[str]]) -> set[str]:
    seen = set(seeds)
    todo = list(seeds)
    while todo:
        for child in successors[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen
