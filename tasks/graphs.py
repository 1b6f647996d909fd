"""Graph path-finding tasks (Graves et al. 2016, "Hybrid computing using a neural network with
dynamic external memory", Methods: graph tasks), and bAbI task 19 style path finding.

**Graphs.** `random_graph`: N points uniform in the unit square, each node linked to its K
nearest neighbours (K drawn per node), node labels distinct in [0, 999], edge labels unique per
source. `transit_graph`: a few lines of stations, each line a path of distinct stations run in
both directions (one edge label per line and direction), every line after the first sharing one
or two interchange stations with earlier ones: a small London-Underground-like map.
`babi_path_finding`: rooms on a grid joined north/south/east/west, told as bAbI 19 stories
("The kitchen is north of the hallway. … How do you go from the den to the kitchen?" "s,e").

**Queries** (`diffvm.tasks.graph_text`): traversal (a start and edge labels → the stations
visited), shortest path (start, goal → a path; `shortest_path_query` asks only for pairs whose
shortest path is unique, so that the target is well defined), relation inference (a named
sequence of labels from a start → its end node). `solve` answers any query with networkx;
`score_answer` / `score_answers` score answers against it: exact path match, valid-path rate
and, for shortest paths, "valid and at most one step longer than optimal".

**Text to tensors.** A task generates each episode as text (`format_episode`), parses it back
(`parse_episode`) and encodes the parsed episode, so the parser is what makes training data:

    DNC encoding (`DncEncoding`): one triple a step; each label (source, destination, edge) as
    3 one-hot decimal digits (30 channels, a missing field all zero) = 90 channels, then 3
    phase channels (query, plan, answer); I = 93.

    phase     graph              query                          plan        answer
    steps     one per triple     traversal: (s, _, l₁), (_, _, lᵢ)   P blank    one per path edge
                                 shortest:  (s, g, _)
    target    –                  –                              –           (u, v, label) of the edge
    mask      0                  0                              0           1

    Outputs: the structured prediction of a triple a step, 9 softmaxes of 10 digits (O = 90,
    `class_groups` 9); where two edges join the same stations (two lines of a transit map), a
    shortest path's target triple takes the smaller label.

    Token encoding (`TokenEncoding`): one symbol a step (the 10 digits and `;`, `traverse`,
    `shortest`, `plan`, `?`), labels spelt as 3 digits, a triple as 9 digits then `;`; each
    answer node after the start is asked for by 3 `?` steps whose targets are its digits
    (O = 10, one softmax).

Episodes of a batch differ in length: shorter ones are padded at the front with zero steps
(mask 0), so that every answer ends at the last step.

**Curriculum** (DNC): lesson k draws graphs of `min_nodes` to n_k nodes, out-degrees
`min_degree` to K_k and paths of `min_steps` to S_k edges, where each top grows linearly from
its minimum (lesson 0) to its maximum (the last lesson); the trainer moves to the next lesson
when training batches reach the threshold (90 % in the paper). A share `replay` of each batch's
episodes comes from a lesson drawn uniformly among the earlier ones, so that earlier lessons are
not forgotten. (The curriculum's exact-match figure is taken over the whole batch, replayed
episodes included.) Splits "lesson0", "lesson1", … hold one earlier lesson each, without
replay ("train" is the last lesson): `diffvm eval RUN` reports accuracy by lesson.

Everything random comes from the injected `numpy.random.Generator`: the same seed gives the same
graphs and batches, and no global random state is read.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import networkx as nx
import numpy as np
import torch

from diffvm.tasks.algorithmic import _batch, _check_field
from diffvm.tasks.base import Batch, SequenceTask, register_task
from diffvm.tasks.graph_text import (
    Episode,
    GraphError,
    Inference,
    Label,
    Query,
    ShortestPath,
    Traversal,
    format_episode,
    format_query,
    parse_episode,
)

__all__ = [
    "DIRECTIONS", "LABELS", "BabiExample", "DncEncoding", "GraphShortestPath", "GraphTask", "GraphTaskConfig",
    "GraphTraversal", "Lesson", "PathScore", "TokenEncoding", "babi_episode", "babi_path_finding", "follow",
    "inference_query", "is_path", "random_graph", "score_answer", "score_answers", "shortest_path_query", "solve",
    "transit_graph", "traversal_query",
]

LABELS = 1000  # node and edge labels are drawn from [0, LABELS): 3 decimal digits, as in the DNC
DIGITS = 3  # decimal digits of a label
BASE = 10  # classes of a digit
LABEL_WIDTH = DIGITS * BASE  # channels of one label: 3 one-hot digits
TRIPLE = ("source", "destination", "label")
PHASES = ("query", "plan", "answer")  # the phase channels after a step's triple
# A sampler draws a fresh graph when the query it wants cannot be asked of the one it drew
# (no pair at the drawn distance with a unique shortest path); it gives up after this many.
MAX_ATTEMPTS = 200
LESSON_SPLIT = "lesson"  # split "lesson{k}": curriculum lesson k alone
# bAbI 19: directions, their grid steps, opposites and the answer's one-letter abbreviations.
DIRECTIONS = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
ROOMS = ("bathroom", "bedroom", "den", "garden", "hallway", "kitchen", "office", "cellar", "attic")


def _ints(values) -> list[int]:
    return [int(v) for v in values]


# --- graphs ----------------------------------------------------------------------------------


def random_graph(rng: np.random.Generator, nodes: int, degree: tuple[int, int]) -> nx.MultiDiGraph:
    """A DNC random graph: `nodes` points uniform in the unit square (node attribute `pos`), each
    linked to its K nearest neighbours, K uniform in `degree` per node (at most nodes − 1).

    Node labels are distinct in [0, LABELS); each node's out-edge labels are distinct in [0, LABELS).
    """
    if nodes < 1 or not 1 <= degree[0] <= degree[1]:
        raise ValueError(f"random_graph needs nodes ≥ 1 and 1 ≤ degree low ≤ high, got {nodes}, {degree}")
    points = rng.random((nodes, 2))  # (N, 2)
    names = _ints(rng.choice(LABELS, size=nodes, replace=False))
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)  # (N, N)
    np.fill_diagonal(squared, np.inf)  # a node is not its own neighbour
    graph = nx.MultiDiGraph()
    for name, point in zip(names, points.tolist()):
        graph.add_node(name, pos=tuple(point))
    for i in range(nodes):
        k = min(int(rng.integers(degree[0], degree[1] + 1)), nodes - 1)
        nearest = np.argsort(squared[i], kind="stable")[:k]  # ties go to the lower index
        for j, label in zip(nearest.tolist(), _ints(rng.choice(LABELS, size=k, replace=False))):
            graph.add_edge(names[i], names[j], key=label, label=label)
    return graph


def transit_graph(rng: np.random.Generator, stations: int, lines: int) -> nx.MultiDiGraph:
    """A transit map: `lines` lines over `stations` stations (module docstring).

    The stations are split among the lines (the first gets at least two, the others at least one
    of their own); each later line also calls at one or two stations of earlier lines
    (interchanges), in random positions. A line runs both ways, with a label per direction,
    distinct over all lines, so each station's out-edge labels differ. Graph attribute `lines`:
    each line's stations in order and its two labels.
    """
    if lines < 1 or stations < lines + 1:
        raise ValueError(f"transit_graph needs lines ≥ 1 and stations ≥ lines + 1, got {stations}, {lines}")
    names = _ints(rng.choice(LABELS, size=stations, replace=False))
    labels = _ints(rng.choice(LABELS, size=2 * lines, replace=False))
    # own stations per line: 2 for the first, 1 for the others, the rest spread uniformly
    own = np.array([2] + [1] * (lines - 1)) + np.bincount(rng.integers(0, lines, size=stations - lines - 1),
                                                          minlength=lines)
    graph = nx.MultiDiGraph(lines=[])
    graph.add_nodes_from(names)
    placed: list[int] = []
    start = 0
    for line in range(lines):
        stops = names[start:start + int(own[line])]
        start += int(own[line])
        if placed:
            shared = _ints(rng.choice(len(placed), size=min(len(placed), int(rng.integers(1, 3))), replace=False))
            stops = stops + [placed[i] for i in shared]
        stops = [stops[i] for i in rng.permutation(len(stops))]
        forward, backward = labels[2 * line], labels[2 * line + 1]
        for a, b in zip(stops, stops[1:]):
            graph.add_edge(a, b, key=forward, label=forward)
            graph.add_edge(b, a, key=backward, label=backward)
        graph.graph["lines"].append((tuple(stops), forward, backward))
        placed += [s for s in stops if s not in placed]
    return graph


# --- queries and their answers ---------------------------------------------------------------


def follow(graph: nx.MultiDiGraph, start: Label, labels: Iterable[Label]) -> tuple[Label, ...] | None:
    """The stations visited from `start` following `labels` in turn (start first), or None when a
    label leads out of no station on the way."""
    path = [start]
    for label in labels:
        nxt = [v for _, v, lab in graph.out_edges(path[-1], data="label") if lab == label]
        if not nxt:
            return None
        path.append(nxt[0])  # labels are unique per source: at most one
    return tuple(path)


def is_path(graph: nx.MultiDiGraph, nodes: Iterable[Label]) -> bool:
    """Whether `nodes` is a walk of the graph: at least one node, each joined to the next by an edge."""
    nodes = list(nodes)
    return bool(nodes) and all(graph.has_node(n) for n in nodes) and all(
        graph.has_edge(a, b) for a, b in zip(nodes, nodes[1:]))


def _edge_label(graph: nx.MultiDiGraph, a: Label, b: Label, label: Label | None = None) -> Label:
    """The label of an edge a → b: `label` when given (and present), else the smallest."""
    keys = list(graph[a][b])
    return label if label in keys else min(keys, key=lambda k: (isinstance(k, str), str(k).zfill(DIGITS)))


def solve(graph: nx.MultiDiGraph, query: Query, relations: dict | None = None):
    """The networkx answer of a query: a traversal's stations or a shortest path (start first),
    or an inference's end node (None where the query has no answer)."""
    if isinstance(query, Traversal):
        return follow(graph, query.start, query.labels)
    if isinstance(query, ShortestPath):
        try:
            return tuple(nx.shortest_path(graph, query.start, query.goal))
        except nx.NetworkXNoPath:
            return None
    stations = follow(graph, query.start, (relations or {})[query.relation])
    return None if stations is None else stations[-1]


def _walk(rng: np.random.Generator, graph: nx.MultiDiGraph, steps: int) -> tuple[Label, tuple, tuple] | None:
    """A random walk of `steps` edges from a uniform start, each edge uniform among the out-edges:
    (start, labels, stations), or None when it reaches a node without out-edges."""
    nodes = list(graph.nodes)
    start = nodes[int(rng.integers(len(nodes)))]
    stations, labels = [start], []
    for _ in range(steps):
        out = list(graph.out_edges(stations[-1], data="label"))
        if not out:
            return None
        _, v, label = out[int(rng.integers(len(out)))]
        stations.append(v)
        labels.append(label)
    return start, tuple(labels), tuple(stations)


def traversal_query(rng: np.random.Generator, graph: nx.MultiDiGraph, steps: int) -> Traversal | None:
    """A traversal of `steps` labels along a random walk, with its answer (None: the walk got stuck)."""
    walk = _walk(rng, graph, steps)
    return None if walk is None else Traversal(walk[0], walk[1], walk[2])


def inference_query(rng: np.random.Generator, graph: nx.MultiDiGraph, steps: int,
                    relation: Label) -> tuple[tuple[Label, ...], Inference] | None:
    """A relation named `relation` of `steps` labels along a random walk, and its query with the
    answer: (labels, Inference), or None when the walk got stuck."""
    walk = _walk(rng, graph, steps)
    return None if walk is None else (walk[1], Inference(relation, walk[0], walk[2][-1]))


def _shortest_path_counts(graph: nx.MultiDiGraph, start: Label) -> tuple[dict, dict]:
    """Breadth-first from `start`: each reachable node's distance and number of shortest paths."""
    distance, count, frontier = {start: 0}, {start: 1}, [start]
    while frontier:
        layer = []
        for u in frontier:
            for v in graph.successors(u):
                if v not in distance:
                    distance[v], count[v] = distance[u] + 1, count[u]
                    layer.append(v)
                elif distance[v] == distance[u] + 1:
                    count[v] += count[u]
        frontier = layer
    return distance, count


def shortest_path_query(rng: np.random.Generator, graph: nx.MultiDiGraph, steps: int) -> ShortestPath | None:
    """A start and goal `steps` edges apart whose shortest path is unique, with that path; starts
    are tried in a random order, the goal is uniform among the start's. None: no such pair."""
    nodes = list(graph.nodes)
    for i in rng.permutation(len(nodes)).tolist():
        distance, count = _shortest_path_counts(graph, nodes[i])
        goals = [v for v, d in distance.items() if d == steps and count[v] == 1]
        if goals:
            goal = goals[int(rng.integers(len(goals)))]
            return ShortestPath(nodes[i], goal, tuple(nx.shortest_path(graph, nodes[i], goal)))
    return None


# --- scoring ---------------------------------------------------------------------------------


class PathScore(NamedTuple):
    """How an answer compares with networkx's.

    exact: the answer is the ground truth (`query.answer` when it has one, else `solve`'s).
    valid: a traversal's or shortest path's answer is a walk of the graph from the start (a
        shortest path's also ends at the goal); an inference's is exact.
    near_optimal: a shortest path's answer is valid and at most one step longer than optimal;
        for the other queries, exact.
    """

    exact: bool
    valid: bool
    near_optimal: bool


def score_answer(graph: nx.MultiDiGraph, query: Query, answer, relations: dict | None = None) -> PathScore:
    """Score `answer` (stations, start first; an inference's end node; None: no answer) for `query`."""
    truth = query.answer if query.answer is not None else solve(graph, query, relations)
    if isinstance(query, Inference) or answer is None:
        exact = answer is not None and answer == truth
        return PathScore(exact, exact, exact)
    answer = tuple(answer)
    exact = answer == truth
    valid = answer[:1] == (query.start,) and is_path(graph, answer)
    if isinstance(query, Traversal):
        return PathScore(exact, valid, exact)
    valid = valid and answer[-1] == query.goal
    near = valid and len(answer) - 1 <= nx.shortest_path_length(graph, query.start, query.goal) + 1
    return PathScore(exact, valid, near)


def score_answers(items: Iterable[tuple]) -> dict[str, float]:
    """Rates of `exact`, `valid` and `near_optimal` over (graph, query, answer[, relations]) items."""
    scores = [score_answer(*item) for item in items]
    if not scores:
        raise ValueError("score_answers needs at least one (graph, query, answer) item")
    return {name: sum(getattr(s, name) for s in scores) / len(scores) for name in PathScore._fields}


# --- bAbI 19 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BabiExample:
    """A bAbI 19 path-finding example: a story, a question, the answer (one letter per move) and
    the same thing in the graph language (the rooms, an edge per direction, a shortest-path query)."""

    story: tuple[str, ...]
    question: str
    answer: str
    episode: Episode

    def text(self) -> str:
        return "\n".join((*self.story, f"{self.question}\t{self.answer}"))


def babi_episode(story: Iterable[str], question: str) -> Episode:
    """The episode of a bAbI 19 story: "The A is D of the B." gives B → A labelled D and A → B
    labelled D's opposite; "How do you go from the A to the B?" a shortest-path query."""
    words = question.rstrip("?").split()
    if words[:6] != ["How", "do", "you", "go", "from", "the"] or len(words) != 10 or words[7:9] != ["to", "the"]:
        raise GraphError(f"not a bAbI 19 question 'How do you go from the A to the B?': {question!r}")
    return Episode(_babi_triples(story), queries=(ShortestPath(words[6], words[9]),))


def _babi_triples(story: Iterable[str]) -> tuple:
    triples = []
    for sentence in story:
        words = sentence.rstrip(".").split()
        if len(words) != 7 or words[0] != "The" or words[2:3] != ["is"] or words[3] not in DIRECTIONS \
                or words[4:6] != ["of", "the"]:
            raise GraphError(f"not a bAbI 19 sentence 'The A is DIRECTION of the B.': {sentence!r}")
        a, direction, b = words[1], words[3], words[6]
        triples += [(b, a, direction), (a, b, OPPOSITE[direction])]
    return tuple(triples)


def babi_path_finding(rng: np.random.Generator, rooms: int = 5, steps: int = 2) -> BabiExample:
    """A bAbI 19 example: `rooms` rooms placed one by one next to a placed room on a grid (so the
    rooms form a tree, and every path is the only one), a sentence per neighbouring pair in a
    random order, and a question whose answer takes `steps` moves."""
    if not 2 <= rooms <= len(ROOMS) or not 1 <= steps < rooms:
        raise ValueError(f"babi_path_finding needs 2 ≤ rooms ≤ {len(ROOMS)} and 1 ≤ steps < rooms, "
                         f"got rooms={rooms}, steps={steps}")
    for _ in range(MAX_ATTEMPTS):
        names = [ROOMS[i] for i in rng.permutation(len(ROOMS))[:rooms].tolist()]
        cells = {(0, 0): names[0]}
        sentences = []
        for name in names[1:]:
            while True:
                here = list(cells)[int(rng.integers(len(cells)))]
                direction = list(DIRECTIONS)[int(rng.integers(4))]
                dx, dy = DIRECTIONS[direction]
                there = (here[0] + dx, here[1] + dy)
                if there not in cells:
                    break
            cells[there] = name
            if rng.integers(2):
                sentences.append(f"The {name} is {direction} of the {cells[here]}.")
            else:
                sentences.append(f"The {cells[here]} is {OPPOSITE[direction]} of the {name}.")
        sentences = [sentences[i] for i in rng.permutation(len(sentences))]
        graph = Episode(_babi_triples(sentences)).graph
        query = shortest_path_query(rng, graph, steps)
        if query is not None:
            break
    else:
        raise RuntimeError(f"no pair of rooms {steps} moves apart in {MAX_ATTEMPTS} stories")
    question = f"How do you go from the {query.start} to the {query.goal}?"
    moves = [_edge_label(graph, a, b) for a, b in zip(query.answer, query.answer[1:])]
    episode = Episode(_babi_triples(sentences), queries=(query,))
    return BabiExample(tuple(sentences), question, ",".join(m[0] for m in moves), episode)


# --- encodings -------------------------------------------------------------------------------


def _digits(label: Label, what: str) -> list[int]:
    """The 3 decimal digits of a label in [0, LABELS), most significant first."""
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < LABELS:
        raise GraphError(f"{what} {label!r} cannot be encoded: labels must be integers in [0, {LABELS})")
    return [int(d) for d in f"{label:0{DIGITS}d}"]


def _number(digits) -> int:
    return int("".join(str(int(d)) for d in digits))


def _answer_edges(episode: Episode) -> tuple[Query, list[tuple[Label, Label, Label]]]:
    """The episode's one query and the (u, v, label) edges of its answer path."""
    if len(episode.queries) != 1 or episode.queries[0].answer is None:
        raise GraphError(f"an encoded episode needs exactly one query with its answer, got {episode.queries}")
    query = episode.queries[0]
    if isinstance(query, Inference):
        raise GraphError(f"the encodings take traversals and shortest paths, not {format_query(query)!r}")
    path, graph = query.answer, episode.graph
    labels = query.labels if isinstance(query, Traversal) else (None,) * (len(path) - 1)
    if not is_path(graph, path) or len(labels) != len(path) - 1:
        raise GraphError(f"the answer of {format_query(query)!r} is not a path of the graph")
    return query, [(a, b, _edge_label(graph, a, b, label)) for a, b, label in zip(path, path[1:], labels)]


class Decoded(NamedTuple):
    """An encoded episode read back: its graph, its query (no answer), and the predicted answer."""

    graph: nx.MultiDiGraph
    query: Query
    answer: tuple | None


class DncEncoding:
    """The DNC encoding (module docstring): a triple a step, I = 93, 9 softmax groups of 10."""

    name = "dnc"
    input_size = 3 * LABEL_WIDTH + len(PHASES)
    class_groups = 3 * DIGITS
    output_size = class_groups * BASE

    @staticmethod
    def _triple(triple, phase: str | None = None) -> np.ndarray:
        """(I,) a step: the labels of `triple` (None fields left zero) and a phase flag."""
        step = np.zeros(DncEncoding.input_size, dtype=np.float32)
        for i, (what, label) in enumerate(zip(TRIPLE, triple)):
            if label is not None:
                step[i * LABEL_WIDTH + BASE * np.arange(DIGITS) + _digits(label, what)] = 1
        if phase is not None:
            step[3 * LABEL_WIDTH + PHASES.index(phase)] = 1
        return step

    def encode(self, episode: Episode, planning: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(T, I) inputs, (T, O) targets, (T,) mask of one episode with one answered query."""
        query, edges = _answer_edges(episode)
        steps = [self._triple(t) for t in episode.triples]
        if isinstance(query, Traversal):
            steps += [self._triple((query.start if i == 0 else None, None, label), "query")
                      for i, label in enumerate(query.labels)]
        else:
            steps.append(self._triple((query.start, query.goal, None), "query"))
        steps += [self._triple((None, None, None), "plan") for _ in range(planning)]
        asked = len(steps)
        steps += [self._triple((None, None, None), "answer") for _ in edges]
        targets = np.zeros((len(steps), self.output_size), dtype=np.float32)  # (T, O)
        targets[:, ::BASE] = 1  # unscored steps: class 0 in every group, as a placeholder
        for t, edge in enumerate(edges, start=asked):
            classes = [d for what, label in zip(TRIPLE, edge) for d in _digits(label, what)]
            targets[t] = 0
            targets[t, BASE * np.arange(self.class_groups) + np.array(classes)] = 1
        mask = np.zeros(len(steps), dtype=np.float32)  # (T,)
        mask[asked:] = 1
        return np.stack(steps), targets, mask

    @staticmethod
    def _labels(step: np.ndarray) -> list[Label | None]:
        """The three labels of a (90+,) step, None where a field is blank."""
        fields = step[:3 * LABEL_WIDTH].reshape(3, DIGITS, BASE)  # (3, D, 10)
        return [_number(f.argmax(-1)) if f.sum() > 0 else None for f in fields]

    def decode(self, inputs: np.ndarray, outputs: np.ndarray, mask: np.ndarray) -> Decoded:
        """The graph and query of (T, I) inputs, and the answer that (T, O) one-hot outputs spell
        at the masked steps (None unless their triples chain into a walk of the graph's edges)."""
        phase = inputs[:, 3 * LABEL_WIDTH:]  # (T, 3)
        graph_steps = [t for t in range(len(inputs)) if phase[t].sum() == 0 and inputs[t].sum() > 0]
        graph = nx.MultiDiGraph()
        for t in graph_steps:
            s, d, label = self._labels(inputs[t])
            graph.add_edge(s, d, key=label, label=label)
        asked = [self._labels(inputs[t]) for t in np.flatnonzero(phase[:, PHASES.index("query")])]
        if asked[0][1] is None:
            query = Traversal(asked[0][0], tuple(a[2] for a in asked))
        else:
            query = ShortestPath(asked[0][0], asked[0][1])
        triples = [self._labels(outputs[t]) for t in np.flatnonzero(mask)]
        answer = None
        if all(graph.has_edge(s, d, key=label) for s, d, label in triples) and all(
                a[1] == b[0] for a, b in zip(triples, triples[1:])):
            answer = (triples[0][0], *(d for _, d, _ in triples))
            if isinstance(query, Traversal) and tuple(t[2] for t in triples) != query.labels:
                answer = None  # a walk, but not along the labels asked for
        return Decoded(graph, query, answer)


class TokenEncoding:
    """The token encoding (module docstring): a symbol a step, for sequence models."""

    name = "tokens"
    tokens = (*"0123456789", ";", "traverse", "shortest", "plan", "?")
    input_size = len(tokens)
    class_groups = 1
    output_size = BASE

    def _ids(self, words: list[str]) -> list[int]:
        return [self.tokens.index(w) for w in words]

    @staticmethod
    def _spell(label: Label, what: str) -> list[str]:
        return [str(d) for d in _digits(label, what)]

    def encode(self, episode: Episode, planning: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(T, I) inputs, (T, O) targets, (T,) mask of one episode with one answered query."""
        query, _ = _answer_edges(episode)
        words = [w for triple in episode.triples
                 for w in (*(d for what, x in zip(TRIPLE, triple) for d in self._spell(x, what)), ";")]
        if isinstance(query, Traversal):
            words += ["traverse", *self._spell(query.start, "start"),
                      *(d for label in query.labels for d in self._spell(label, "label"))]
        else:
            words += ["shortest", *self._spell(query.start, "start"), *self._spell(query.goal, "goal")]
        words += ["plan"] * planning
        asked = len(words)
        answer = [int(d) for node in query.answer[1:] for d in self._spell(node, "node")]
        words += ["?"] * len(answer)
        inputs = np.eye(self.input_size, dtype=np.float32)[self._ids(words)]  # (T, I)
        targets = np.zeros((len(words), BASE), dtype=np.float32)  # (T, O)
        targets[:asked, 0] = 1  # unscored placeholder: class 0
        targets[np.arange(asked, len(words)), answer] = 1
        mask = np.zeros(len(words), dtype=np.float32)  # (T,)
        mask[asked:] = 1
        return inputs, targets, mask

    def decode(self, inputs: np.ndarray, outputs: np.ndarray, mask: np.ndarray) -> Decoded:
        """The graph and query of (T, I) one-hot inputs, and the answer that (T, O) one-hot
        outputs spell at the masked steps (the start, then a node per 3 digits)."""
        words = [self.tokens[i] for i in inputs[inputs.sum(-1) > 0].argmax(-1).tolist()]
        graph = nx.MultiDiGraph()
        kind = next(i for i, w in enumerate(words) if w in ("traverse", "shortest"))
        for part in "".join(words[:kind]).split(";")[:-1]:
            s, d, label = (int(part[i:i + DIGITS]) for i in range(0, 3 * DIGITS, DIGITS))
            graph.add_edge(s, d, key=label, label=label)
        spelt = "".join(w for w in words[kind + 1:] if w.isdigit())
        numbers = [int(spelt[i:i + DIGITS]) for i in range(0, len(spelt), DIGITS)]
        query = (Traversal(numbers[0], tuple(numbers[1:])) if words[kind] == "traverse"
                 else ShortestPath(numbers[0], numbers[1]))
        digits = outputs[mask > 0].argmax(-1).tolist()
        return Decoded(graph, query, (query.start, *(_number(digits[i:i + DIGITS])
                                                     for i in range(0, len(digits), DIGITS))))


ENCODINGS = {e.name: e for e in (DncEncoding(), TokenEncoding())}


# --- the tasks -------------------------------------------------------------------------------


class Lesson(NamedTuple):
    """The (lowest, highest) graph size, out-degree and path length (edges) of a curriculum lesson."""

    nodes: tuple[int, int]
    degree: tuple[int, int]
    steps: tuple[int, int]


@dataclass
class GraphTaskConfig:
    """Options of the graph tasks (module docstring); small enough to train on a CPU in an hour."""

    graph: str = "random"  # "random" (DNC: points in the unit square, K nearest neighbours) or "transit" (lines)
    min_nodes: int = 3  # fewest nodes (stations) of a graph, at every lesson
    max_nodes: int = 6  # most nodes at the last lesson
    min_degree: int = 1  # fewest out-edges K of a node of a random graph (K drawn per node)
    max_degree: int = 2  # most out-edges of a node at the last lesson
    min_steps: int = 1  # fewest edges of a queried path
    max_steps: int = 3  # most edges of a queried path at the last lesson
    lessons: int = 3  # curriculum levels: the three tops grow linearly from their minima to their maxima
    replay: float = 0.2  # share of a batch's episodes drawn from an earlier lesson, chosen uniformly
    planning_steps: int = 2  # blank steps between the query and the answer (the DNC's planning phase)
    encoding: str = "dnc"  # "dnc" (a triple a step, labels as one-hot digits) or "tokens" (a symbol a step)
    lines: int = 2  # lines of a transit map (graph "transit", and split "transit")
    eval_max_nodes: int = 9  # split "large": graphs of max_nodes + 1 to this many nodes

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        name = type(self).__name__
        _check_field(name, "graph", self.graph, self.graph in ("random", "transit"), "'random' or 'transit'")
        _check_field(name, "min_nodes", self.min_nodes, 2 <= self.min_nodes <= LABELS, f"in [2, {LABELS}]")
        _check_field(name, "max_nodes", self.max_nodes, self.min_nodes <= self.max_nodes <= LABELS,
                     f"in [min_nodes, {LABELS}]")
        _check_field(name, "min_degree", self.min_degree, self.min_degree >= 1, "≥ 1")
        _check_field(name, "max_degree", self.max_degree, self.max_degree >= self.min_degree, "≥ min_degree")
        # a shortest path of s edges needs s + 1 nodes, in the smallest graph too
        _check_field(name, "min_steps", self.min_steps, 1 <= self.min_steps < self.min_nodes, "in [1, min_nodes)")
        _check_field(name, "max_steps", self.max_steps, self.max_steps >= self.min_steps, "≥ min_steps")
        _check_field(name, "lessons", self.lessons, self.lessons >= 1, "≥ 1")
        _check_field(name, "replay", self.replay, 0 <= self.replay < 1, "in [0, 1)")
        _check_field(name, "planning_steps", self.planning_steps, self.planning_steps >= 0, "≥ 0")
        _check_field(name, "encoding", self.encoding, self.encoding in ENCODINGS, f"one of {', '.join(ENCODINGS)}")
        _check_field(name, "lines", self.lines, 1 <= self.lines < self.min_nodes, "in [1, min_nodes)")
        _check_field(name, "eval_max_nodes", self.eval_max_nodes,
                     self.max_nodes < self.eval_max_nodes <= LABELS, f"in (max_nodes, {LABELS}]")


class GraphTask(SequenceTask):
    """A graph query task (module docstring): subclasses give `name` and `query(rng, graph, steps)`.

    Inputs (B, T, I), one-hot targets (B, T, O) in `class_groups` softmax groups, mask (B, T);
    I, O and the groups come from the encoding. Splits: "train" (the last lesson), "large"
    (graphs of max_nodes + 1 … eval_max_nodes nodes) and, for random graphs, "transit" (transit
    maps, the London Underground test of a model trained on random graphs).
    """

    Config = GraphTaskConfig
    output_kind = "classes"
    # The DNC paper's model made small: an LSTM-128 controller, a 64 x 16 memory, two read heads.
    recipe = {"memory": "dnc", "memory_slots": 64, "memory_width": 16, "heads": 2, "hidden": 128, "updates": 15000,
              "eval_every": 1000, "checkpoint_every": 1000}

    def __init__(self, config: GraphTaskConfig | None = None):
        super().__init__(config)
        self.encoding = ENCODINGS[self.config.encoding]
        self.class_groups = self.encoding.class_groups  # an instance value: it depends on the encoding

    @abstractmethod
    def query(self, rng: np.random.Generator, graph: nx.MultiDiGraph, steps: int) -> Query | None:
        """An answered query of a path of `steps` edges in `graph`, or None when it has none."""

    @property
    def input_size(self) -> int:
        return self.encoding.input_size

    @property
    def output_size(self) -> int:
        return self.encoding.output_size

    @property
    def levels(self) -> int:
        return self.config.lessons

    @property
    def splits(self) -> tuple[str, ...]:
        lessons = tuple(f"{LESSON_SPLIT}{level}" for level in range(self.config.lessons - 1))  # the last is "train"
        return ("train", "large", *(("transit",) if self.config.graph == "random" else ()), *lessons)

    def lesson(self, level: int | None = None) -> Lesson:
        """Curriculum lesson `level` (None: the last): each top grows linearly from its minimum."""
        level, c = self.check_level(level), self.config
        top = lambda low, high: low + round(level * (high - low) / max(c.lessons - 1, 1))  # noqa: E731
        return Lesson((c.min_nodes, top(c.min_nodes, c.max_nodes)), (c.min_degree, top(c.min_degree, c.max_degree)),
                      (c.min_steps, top(c.min_steps, c.max_steps)))

    def episode_text(self, rng: np.random.Generator, lesson: Lesson, graph: str) -> str:
        """One episode as text: a graph of kind `graph` ("random" or "transit") drawn within
        `lesson`, its triples in a random order, and one answered query."""
        c = self.config
        for _ in range(MAX_ATTEMPTS):
            nodes = int(rng.integers(lesson.nodes[0], lesson.nodes[1] + 1))
            steps = int(rng.integers(lesson.steps[0], min(lesson.steps[1], nodes - 1) + 1))
            g = random_graph(rng, nodes, lesson.degree) if graph == "random" else transit_graph(rng, nodes, c.lines)
            query = self.query(rng, g, steps)
            if query is not None:
                triples = list(g.edges(data="label"))
                return format_episode(Episode(tuple(triples[i] for i in rng.permutation(len(triples))),
                                              queries=(query,)))
        raise RuntimeError(f"task {self.name!r}: no query in {MAX_ATTEMPTS} {graph} graphs of {lesson}")

    def _batch(self, texts: list[str]) -> Batch:
        """Parse and encode episodes; shorter ones are padded at the front (mask 0)."""
        encoded = [self.encoding.encode(parse_episode(text), self.config.planning_steps) for text in texts]
        steps = max(len(x) for x, _, _ in encoded)
        inputs = np.zeros((len(texts), steps, self.input_size), dtype=np.float32)  # (B, T, I)
        targets = np.zeros((len(texts), steps, self.output_size), dtype=np.float32)  # (B, T, O)
        targets[..., ::self.output_size // self.class_groups] = 1  # padding: class 0 placeholders
        mask = np.zeros((len(texts), steps), dtype=np.float32)  # (B, T)
        for b, (x, y, m) in enumerate(encoded):
            inputs[b, steps - len(x):], targets[b, steps - len(x):], mask[b, steps - len(x):] = x, y, m
        return _batch(inputs, targets, mask)

    def sample_texts(self, rng: np.random.Generator, batch: int, level: int | None = None) -> list[str]:
        """The episodes of a training batch, as text: each from lesson `level`, or with
        probability `replay` from an earlier lesson drawn uniformly."""
        level = self.check_level(level)
        self.check_batch(batch)
        texts = []
        for _ in range(batch):
            lesson = level
            if level > 0 and rng.random() < self.config.replay:
                lesson = int(rng.integers(level))
            texts.append(self.episode_text(rng, self.lesson(lesson), self.config.graph))
        return texts

    def sample(self, rng: np.random.Generator, batch: int, level: int | None = None) -> Batch:
        return self._batch(self.sample_texts(rng, batch, level))

    def split_texts(self, rng: np.random.Generator, batch: int, split: str) -> list[str]:
        """The episodes of an evaluation batch, as text (class docstring), without replay."""
        self.check_split(split)
        self.check_batch(batch)
        last, c = self.lesson(), self.config
        if split.startswith(LESSON_SPLIT):  # one earlier lesson alone: accuracy by lesson
            return [self.episode_text(rng, self.lesson(int(split[len(LESSON_SPLIT):])), c.graph) for _ in range(batch)]
        if split == "large":
            lesson = last._replace(nodes=(c.max_nodes + 1, c.eval_max_nodes))
            return [self.episode_text(rng, lesson, c.graph) for _ in range(batch)]
        return [self.episode_text(rng, last, "transit" if split == "transit" else c.graph) for _ in range(batch)]

    def sample_split(self, rng: np.random.Generator, batch: int, split: str) -> Batch:
        return self._batch(self.split_texts(rng, batch, split))

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[Decoded]:
        """Each sequence's graph and query, read back from its inputs, and the answer the
        logits (B, T, O) spell (None where it is not a walk of the graph's edges)."""
        predicted = self.predict(logits.detach()).cpu().numpy()  # (B, T, O)
        inputs, mask = batch.inputs.cpu().numpy(), batch.mask.cpu().numpy()
        return [self.encoding.decode(inputs[b], predicted[b], mask[b]) for b in range(len(mask))]

    def metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        """`accuracy` (per digit) and `exact` (every digit of the answer right), and networkx's
        `valid` path rate and `near_optimal` rate (shortest path: valid and ≤ 1 step longer than
        optimal), of the answers the outputs spell."""
        figures = super().metrics(logits, batch)
        scores = score_answers((d.graph, d.query, d.answer) for d in self.decode(logits, batch))
        return {**figures, "valid": scores["valid"], "near_optimal": scores["near_optimal"]}


@register_task
class GraphTraversal(GraphTask):
    """Traversal: from a start, follow a sequence of edge labels; answer the edges taken."""

    name = "graph_traversal"

    def query(self, rng: np.random.Generator, graph: nx.MultiDiGraph, steps: int) -> Traversal | None:
        return traversal_query(rng, graph, steps)


@register_task
class GraphShortestPath(GraphTask):
    """Shortest path: from a start to a goal; answer the edges of the (unique) shortest path."""

    name = "graph_shortest_path"

    def query(self, rng: np.random.Generator, graph: nx.MultiDiGraph, steps: int) -> ShortestPath | None:
        return shortest_path_query(rng, graph, steps)
