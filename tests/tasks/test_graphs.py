"""Graph tasks: generators and answers checked against networkx, encodings against plain loops,
scoring, the curriculum with replay, the task protocol, and a smoke training of each task."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from task_checks import check_bad_requests_refused, check_no_global_random_state, check_same_seed_same_batch

from diffvm.controllers.model import ModelConfig
from diffvm.controllers.trainer import TrainConfig, run_config, train
from diffvm.tasks.base import get_task
from diffvm.tasks.graph_text import Episode, GraphError, Inference, ShortestPath, Traversal, parse_episode
from diffvm.tasks.graphs import (
    DIRECTIONS,
    LABELS,
    OPPOSITE,
    DncEncoding,
    GraphShortestPath,
    GraphTaskConfig,
    GraphTraversal,
    Lesson,
    PathScore,
    TokenEncoding,
    babi_episode,
    babi_path_finding,
    follow,
    inference_query,
    random_graph,
    score_answer,
    score_answers,
    shortest_path_query,
    solve,
    transit_graph,
    traversal_query,
)

PERFECT_LOGIT = 20.0
TASKS = {"graph_traversal": GraphTraversal, "graph_shortest_path": GraphShortestPath}
TINY = GraphTaskConfig(min_nodes=3, max_nodes=5, max_steps=2, lessons=2, eval_max_nodes=6, planning_steps=1)


def _labels_unique_per_source(g: nx.MultiDiGraph) -> bool:
    return all(len(labels) == len(set(labels)) for labels in
               ([lab for _, _, lab in g.out_edges(n, data="label")] for n in g.nodes))


# --- generators ----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 4), st.integers(0, 3))
def test_random_graphs_link_each_node_to_its_k_nearest_neighbours(seed, nodes, low, extra):
    g = random_graph(np.random.default_rng(seed), nodes, (low, low + extra))
    names = list(g.nodes)
    assert len(names) == nodes and all(0 <= n < LABELS for n in names)
    assert _labels_unique_per_source(g)
    assert all(0 <= lab < LABELS for _, _, lab in g.edges(data="label"))
    for u in names:  # the paper's rule as a plain loop over squared distances
        x, y = g.nodes[u]["pos"]
        assert 0 <= x < 1 and 0 <= y < 1
        k = g.out_degree(u)
        assert min(low, nodes - 1) <= k <= min(low + extra, nodes - 1)
        others = [v for v in names if v != u]
        dist = {v: (g.nodes[v]["pos"][0] - x) ** 2 + (g.nodes[v]["pos"][1] - y) ** 2 for v in others}.__getitem__
        linked = set(g.successors(u))
        assert len(linked) == k  # no parallel edges in a random graph
        if k:
            assert max(map(dist, linked)) <= min((dist(v) for v in others if v not in linked), default=math.inf)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 2))
def test_the_same_seed_gives_the_same_graph_and_another_seed_another(seed):
    a, b = (random_graph(np.random.default_rng(seed), 8, (1, 3)) for _ in range(2))
    assert nx.utils.graphs_equal(a, b) and list(a.edges) == list(b.edges)
    assert not nx.utils.graphs_equal(a, random_graph(np.random.default_rng(seed + 1), 8, (1, 3)))
    t1, t2 = (transit_graph(np.random.default_rng(seed), 9, 3) for _ in range(2))
    assert nx.utils.graphs_equal(t1, t2) and t1.graph["lines"] == t2.graph["lines"]


def test_out_degrees_are_drawn_per_node_uniformly():
    rng = np.random.default_rng(0)
    counts = Counter(d for _ in range(100) for _, d in random_graph(rng, 10, (1, 4)).out_degree())
    assert sorted(counts) == [1, 2, 3, 4]
    assert all(200 < c < 300 for c in counts.values()), counts  # 250 expected each


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(0, 6))
def test_transit_maps_are_lines_of_stations_with_interchanges(seed, lines, extra):
    stations = lines + 1 + extra
    g = transit_graph(np.random.default_rng(seed), stations, lines)
    assert g.number_of_nodes() == stations and nx.is_strongly_connected(g)
    assert _labels_unique_per_source(g)
    assert len(g.graph["lines"]) == lines
    labels = [lab for _, f, b in g.graph["lines"] for lab in (f, b)]
    assert len(set(labels)) == 2 * lines
    for i, (stops, forward, backward) in enumerate(g.graph["lines"]):
        assert len(stops) == len(set(stops)) >= 2
        assert follow(g, stops[0], [forward] * (len(stops) - 1)) == stops
        assert follow(g, stops[-1], [backward] * (len(stops) - 1)) == stops[::-1]
        if i:  # an interchange with an earlier line
            assert set(stops) & {s for earlier in g.graph["lines"][:i] for s in earlier[0]}


# --- queries against networkx ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 10), st.integers(1, 3), st.integers(1, 4), st.booleans())
def test_every_generated_answer_agrees_with_networkx(seed, nodes, degree, steps, transit):
    rng = np.random.default_rng(seed)
    g = transit_graph(rng, nodes, 2) if transit else random_graph(rng, nodes, (1, degree))
    t = traversal_query(rng, g, steps)
    assert t is not None and len(t.labels) == steps and t.answer[0] == t.start
    for (a, b), label in zip(zip(t.answer, t.answer[1:]), t.labels):  # each move along an edge with the label
        assert label in g[a][b]
    assert solve(g, t) == t.answer
    s = shortest_path_query(rng, g, min(steps, nodes - 1))
    if s is not None:
        assert nx.shortest_path_length(g, s.start, s.goal) == len(s.answer) - 1 == min(steps, nodes - 1)
        assert [tuple(p) for p in nx.all_shortest_paths(g, s.start, s.goal)] == [s.answer]  # the only one
        assert score_answer(g, s, s.answer) == PathScore(True, True, True)
    else:  # no pair at that distance has a unique shortest path
        for u in g.nodes:
            for v, d in nx.single_source_shortest_path_length(g, u).items():
                if d == min(steps, nodes - 1):
                    assert len(list(nx.all_shortest_paths(g, u, v))) > 1
    labels, inf = inference_query(rng, g, steps, relation="r")
    assert inf.answer == follow(g, inf.start, labels)[-1] == solve(g, inf, {"r": labels})


def test_shortest_path_queries_refuse_pairs_with_two_shortest_paths():
    g = nx.MultiDiGraph()
    for u, v in [(1, 2), (1, 3), (2, 4), (3, 4)]:  # two ways from 1 to 4
        g.add_edge(u, v, key=u * 10 + v, label=u * 10 + v)
    rng = np.random.default_rng(0)
    assert shortest_path_query(rng, g, 2) is None
    assert shortest_path_query(rng, g, 1) is not None


# --- scoring -----------------------------------------------------------------------------------


def _square() -> nx.MultiDiGraph:
    """1 → 2 → 3 → 4 and a shortcut 1 → 3."""
    g = nx.MultiDiGraph()
    for u, v, lab in [(1, 2, 5), (2, 3, 5), (3, 4, 5), (1, 3, 6), (4, 1, 5)]:
        g.add_edge(u, v, key=lab, label=lab)
    return g


@pytest.mark.parametrize("answer,expected", [
    ((1, 3, 4), (True, True, True)),  # the shortest path
    ((1, 2, 3, 4), (False, True, True)),  # one step longer: valid, near optimal
    ((1, 2, 3, 4, 1, 3, 4), (False, True, False)),  # a valid walk, far too long
    ((1, 2, 4), (False, False, False)),  # 2 → 4 is no edge
    ((2, 3, 4), (False, False, False)),  # not from the start
    ((1, 3), (False, False, False)),  # not to the goal
    (None, (False, False, False)),
])
def test_shortest_path_scores(answer, expected):
    assert tuple(score_answer(_square(), ShortestPath(1, 4), answer)) == expected


def test_traversal_and_inference_scores_and_rates():
    g = _square()
    t = Traversal(1, (5, 5, 5))
    assert solve(g, t) == (1, 2, 3, 4)
    assert score_answer(g, t, (1, 2, 3, 4)) == PathScore(True, True, True)
    assert score_answer(g, t, (1, 3, 4, 1)) == PathScore(False, True, False)  # a walk, other labels
    assert solve(g, Traversal(4, (6,))) is None
    inf = Inference("r", 1, None)
    assert score_answer(g, inf, 3, {"r": (6,)}) == PathScore(True, True, True)
    assert score_answer(g, inf, 4, {"r": (6,)}) == PathScore(False, False, False)
    rates = score_answers([(g, ShortestPath(1, 4), (1, 3, 4)), (g, ShortestPath(1, 4), (1, 2, 3, 4)),
                           (g, ShortestPath(1, 4), (1, 2, 4)), (g, t, (1, 2, 3, 4))])
    assert rates == {"exact": 0.5, "valid": 0.75, "near_optimal": 0.75}
    with pytest.raises(ValueError, match="at least one"):
        score_answers([])


# --- bAbI 19 -----------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 7), st.integers(1, 2))
def test_babi_stories_parse_to_their_graph_and_answers_follow_networkx(seed, rooms, steps):
    ex = babi_path_finding(np.random.default_rng(seed), rooms, steps)
    assert len(ex.story) == rooms - 1
    assert all(re.fullmatch(r"The \w+ is (north|south|east|west) of the \w+\.", s) for s in ex.story)
    parsed = babi_episode(ex.story, ex.question)
    g = parsed.graph
    assert nx.utils.graphs_equal(g, ex.episode.graph)
    assert nx.is_tree(nx.Graph(g.to_undirected())) and g.number_of_nodes() == rooms  # so every path is the only one
    q = parsed.queries[0]
    path = nx.shortest_path(g, q.start, q.goal)
    moves = [next(iter(g[a][b])) for a, b in zip(path, path[1:])]
    assert ex.answer == ",".join(m[0] for m in moves) and len(moves) == steps
    for a, b in zip(path, path[1:]):  # each move's way back is the opposite direction
        assert OPPOSITE[next(iter(g[a][b]))] == next(iter(g[b][a]))


def test_babi_text_and_errors():
    ex = babi_path_finding(np.random.default_rng(1), 5, 2)
    lines = ex.text().splitlines()
    assert lines[:-1] == list(ex.story) and lines[-1] == f"{ex.question}\t{ex.answer}"
    assert set(ex.answer.split(",")) <= {d[0] for d in DIRECTIONS}
    with pytest.raises(GraphError, match="not a bAbI 19 sentence"):
        babi_episode(["The kitchen is up of the den."], "How do you go from the den to the kitchen?")
    with pytest.raises(GraphError, match="not a bAbI 19 question"):
        babi_episode(["The kitchen is north of the den."], "Where is the kitchen?")
    with pytest.raises(ValueError, match="rooms"):
        babi_path_finding(np.random.default_rng(1), 5, 5)


# --- encodings ---------------------------------------------------------------------------------

EPISODE = Episode(((512, 87, 3), (87, 640, 3), (640, 512, 90)),
                  queries=(Traversal(512, (3, 3), (512, 87, 640)),))


def _digits_of(step: np.ndarray, field: int) -> int | None:
    """A plain reading of the DNC layout: field f's 3 digits are channels 30f + 10d + digit."""
    digits = []
    for d in range(3):
        hot = [c for c in range(10) if step[30 * field + 10 * d + c] == 1]
        if not hot:
            return None
        digits.append(hot[0])
    return 100 * digits[0] + 10 * digits[1] + digits[2]


def test_the_dnc_encoding_of_a_traversal():
    x, y, m = DncEncoding().encode(EPISODE, planning=2)
    assert x.shape == (3 + 2 + 2 + 2, 93) and y.shape == (9, 90) and m.tolist() == [0] * 7 + [1, 1]
    fields = [tuple(_digits_of(step, f) for f in range(3)) for step in x]
    assert fields[:3] == [(512, 87, 3), (87, 640, 3), (640, 512, 90)]
    assert fields[3:5] == [(512, None, 3), (None, None, 3)]  # the query: start and labels
    assert fields[5:] == [(None, None, None)] * 4  # planning and answer steps carry no triple
    assert x[:, 90:].tolist() == [[0, 0, 0]] * 3 + [[1, 0, 0]] * 2 + [[0, 1, 0]] * 2 + [[0, 0, 1]] * 2
    for t, triple in [(7, (512, 87, 3)), (8, (87, 640, 3))]:
        groups = y[t].reshape(9, 10).argmax(-1)
        assert tuple(int("".join(map(str, groups[3 * f:3 * f + 3]))) for f in range(3)) == triple
    assert (y.reshape(9, 9, 10).sum(-1) == 1).all()  # one-hot in every group, placeholders included


def test_the_dnc_encoding_of_a_shortest_path_and_labels_it_cannot_encode():
    e = Episode(EPISODE.triples, queries=(ShortestPath(640, 87, (640, 512, 87)),))
    x, y, m = DncEncoding().encode(e, planning=0)
    assert [_digits_of(x[3], f) for f in range(3)] == [640, 87, None] and x[3, 90] == 1
    assert m.tolist() == [0, 0, 0, 0, 1, 1]
    with pytest.raises(GraphError, match="source 'a' cannot be encoded"):
        DncEncoding().encode(Episode((("a", 1, 2),), queries=(Traversal("a", (2,), ("a", 1)),)), 0)
    with pytest.raises(GraphError, match="label 1000 cannot be encoded"):
        DncEncoding().encode(Episode(((1, 2, 1000),), queries=(Traversal(1, (1000,), (1, 2)),)), 0)
    with pytest.raises(GraphError, match="exactly one query with its answer"):
        DncEncoding().encode(Episode(EPISODE.triples, queries=(ShortestPath(640, 87),)), 0)


def test_the_token_encoding_spells_labels_as_digits():
    enc = TokenEncoding()
    x, y, m = enc.encode(EPISODE, planning=1)
    words = [enc.tokens[i] for i in x.argmax(-1)]
    assert "".join(words) == "51208700" "3;" "0876400" "03;" "6405120" "90;" "traverse512003003" "plan" "??????"
    assert m.sum() == 6 and y[m > 0].argmax(-1).tolist() == [0, 8, 7, 6, 4, 0]


@pytest.mark.parametrize("encoding", ["dnc", "tokens"])
@pytest.mark.parametrize("name", TASKS)
def test_decoding_a_batch_gives_back_graphs_queries_and_answers(name, encoding):
    task = TASKS[name](GraphTaskConfig(encoding=encoding))
    texts = task.sample_texts(np.random.default_rng(0), 6)
    batch = task.sample(np.random.default_rng(0), 6)
    for text, d in zip(texts, task.decode(PERFECT_LOGIT * batch.targets, batch)):
        e = parse_episode(text)
        assert nx.utils.graphs_equal(d.graph, e.graph)
        q = e.queries[0]
        assert d.query == (Traversal(q.start, q.labels) if name == "graph_traversal" else ShortestPath(q.start, q.goal))
        assert d.answer == q.answer


# --- the tasks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding,sizes", [("dnc", (93, 90, 9)), ("tokens", (15, 10, 1))])
@pytest.mark.parametrize("name", TASKS)
def test_batch_shapes_and_padding_at_the_front(name, encoding, sizes):
    task = TASKS[name](GraphTaskConfig(encoding=encoding))
    assert (task.input_size, task.output_size, task.class_groups) == sizes
    b = task.sample(np.random.default_rng(0), 7)
    steps = b.inputs.shape[1]
    assert b.inputs.shape == (7, steps, sizes[0]) and b.targets.shape == (7, steps, sizes[1])
    assert b.mask.shape == (7, steps) and {b.inputs.dtype, b.targets.dtype, b.mask.dtype} == {torch.float32}
    assert (b.mask[:, -1] == 1).all()  # every answer ends at the last step
    assert (b.targets.unflatten(-1, (sizes[2], -1)).sum(-1) == 1).all()
    padded = b.inputs.sum(-1) == 0
    assert (b.mask[padded] == 0).all()


def test_lessons_grow_graph_size_degree_and_path_length():
    task = GraphTraversal(GraphTaskConfig(min_nodes=3, max_nodes=9, max_degree=3, max_steps=4, lessons=4,
                                          eval_max_nodes=12))
    assert task.levels == 4
    assert [task.lesson(k) for k in range(4)] == [
        Lesson((3, 3), (1, 1), (1, 1)), Lesson((3, 5), (1, 2), (1, 2)), Lesson((3, 7), (1, 2), (1, 3)),
        Lesson((3, 9), (1, 3), (1, 4))]
    assert task.lesson(None) == task.lesson(3)
    rng = np.random.default_rng(0)
    level0 = [parse_episode(t) for t in task.sample_texts(rng, 30, 0)]
    assert all(e.graph.number_of_nodes() == 3 and len(e.queries[0].labels) == 1 for e in level0)
    assert all(d == 1 for e in level0 for _, d in e.graph.out_degree())


@pytest.mark.parametrize("replay,low,high", [(0.0, 0.08, 0.22), (0.5, 0.48, 0.66)])
def test_a_share_of_each_batch_replays_earlier_lessons(replay, low, high):
    # lesson 0: 3 nodes exactly; lesson 1: 3 to 9 nodes. P(3 nodes) = replay + (1 − replay)/7
    task = GraphTraversal(GraphTaskConfig(min_nodes=3, max_nodes=9, lessons=2, replay=replay, eval_max_nodes=12))
    sizes = [parse_episode(t).graph.number_of_nodes() for t in task.sample_texts(np.random.default_rng(0), 300, 1)]
    assert low < sizes.count(3) / 300 < high
    level0 = task.sample_texts(np.random.default_rng(0), 50, 0)  # nothing earlier to replay
    assert all(parse_episode(t).graph.number_of_nodes() == 3 for t in level0)


def test_splits_draw_larger_graphs_and_transit_maps():
    task = GraphShortestPath(TINY)
    lessons = tuple(f"lesson{k}" for k in range(TINY.lessons - 1))
    assert task.splits == ("train", "large", "transit", *lessons)
    rng = np.random.default_rng(0)
    large = [parse_episode(t).graph.number_of_nodes() for t in task.split_texts(rng, 20, "large")]
    assert set(large) == {6}
    transit = [parse_episode(t).graph for t in task.split_texts(rng, 10, "transit")]
    assert all(nx.is_strongly_connected(g) for g in transit)
    assert GraphShortestPath(GraphTaskConfig(graph="transit", lessons=1)).splits == ("train", "large")


def test_lesson_splits_hold_one_lesson_without_replay():
    task = GraphTraversal(GraphTaskConfig(lessons=3, min_nodes=3, max_nodes=7, replay=0.5))
    assert task.splits[-2:] == ("lesson0", "lesson1")
    rng = np.random.default_rng(1)
    for k in (0, 1):
        top = task.lesson(k).nodes[1]
        sizes = {parse_episode(t).graph.number_of_nodes() for t in task.split_texts(rng, 40, f"lesson{k}")}
        assert max(sizes) == top  # the lesson's largest graphs appear, and nothing larger (no replay of
        assert min(sizes) >= 3  # a later lesson can occur; an earlier one is a subset of this range)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(list(TASKS)), st.sampled_from(["random", "transit"]))
def test_every_episode_of_a_batch_is_answered_as_networkx_answers(seed, name, graph):
    task = TASKS[name](GraphTaskConfig(graph=graph))
    for text in task.sample_texts(np.random.default_rng(seed), 4):
        e = parse_episode(text)
        q = e.queries[0]
        assert score_answer(e.graph, q, solve(e.graph, q)).exact
        if name == "graph_shortest_path":
            assert [tuple(p) for p in nx.all_shortest_paths(e.graph, q.start, q.goal)] == [q.answer]


@pytest.mark.parametrize("name", TASKS)
def test_the_same_seed_gives_the_same_batch(name):
    check_same_seed_same_batch(TASKS[name](TINY))


@pytest.mark.parametrize("name", TASKS)
def test_no_global_random_state_is_read(name, monkeypatch):
    check_no_global_random_state(TASKS[name](TINY), monkeypatch)


@pytest.mark.parametrize("name", TASKS)
def test_bad_batch_size_split_or_level_is_refused(name):
    check_bad_requests_refused(TASKS[name](TINY), "large")
    assert get_task(name) is TASKS[name]


@pytest.mark.parametrize("field,changes", [
    ("graph", {"graph": "grid"}), ("min_nodes", {"min_nodes": 1}), ("max_nodes", {"max_nodes": 2}),
    ("min_degree", {"min_degree": 0}), ("max_degree", {"max_degree": 0}), ("min_steps", {"min_steps": 3}),
    ("max_steps", {"max_steps": 0}), ("lessons", {"lessons": 0}), ("replay", {"replay": 1.0}),
    ("planning_steps", {"planning_steps": -1}), ("encoding", {"encoding": "bits"}), ("lines", {"lines": 3}),
    ("eval_max_nodes", {"eval_max_nodes": 6}),
])
def test_config_errors_name_the_field(field, changes):
    bad = GraphTaskConfig(**changes)
    with pytest.raises(ValueError, match=re.escape(f"GraphTaskConfig.{field} = {getattr(bad, field)!r}: ")):
        GraphTraversal(bad)


# --- scoring a batch -----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["dnc", "tokens"])
@pytest.mark.parametrize("name", TASKS)
def test_perfect_logits_score_perfectly_and_a_wrong_digit_counts(name, encoding):
    task = TASKS[name](GraphTaskConfig(encoding=encoding))
    b = task.sample(np.random.default_rng(1), 8)
    logits = PERFECT_LOGIT * b.targets
    assert task.loss(logits, b).max().item() < 1e-5
    assert task.metrics(logits, b) == {"accuracy": 1.0, "exact": 1.0, "valid": 1.0, "near_optimal": 1.0}
    wrong = logits.clone()
    t = int(b.mask[3].nonzero()[-1])
    group = task.output_size // task.class_groups
    right = int(b.targets[3, t, :group].argmax())
    wrong[3, t, :group] = 0
    wrong[3, t, (right + 1) % group] = PERFECT_LOGIT  # one digit of sequence 3 wrong
    m = task.metrics(wrong, b)
    assert m["exact"] == 7 / 8 and m["valid"] == 7 / 8
    assert math.isclose(m["accuracy"], 1 - 1 / (b.mask.sum().item() * task.class_groups), rel_tol=1e-6)
    assert torch.isfinite(task.loss(-1e30 * b.targets, b)).all()


def test_a_valid_walk_that_is_not_the_answer_counts_as_valid_only():
    # token encoding, traversal: spell another walk of the graph from the start
    task = GraphTraversal(GraphTaskConfig(encoding="tokens", min_nodes=4, max_nodes=4, min_steps=1, max_steps=1,
                                          min_degree=2, max_degree=2, lessons=1))
    b = task.sample(np.random.default_rng(2), 1)
    d = task.decode(PERFECT_LOGIT * b.targets, b)[0]
    other = next(v for v in d.graph.successors(d.query.start) if v != d.answer[1])
    logits = PERFECT_LOGIT * b.targets.clone()
    steps = b.mask[0].nonzero().flatten()
    logits[0, steps] = 0
    logits[0, steps, torch.tensor([int(c) for c in f"{other:03d}"])] = PERFECT_LOGIT
    m = task.metrics(logits, b)
    assert (m["exact"], m["valid"], m["near_optimal"]) == (0.0, 1.0, 0.0) and m["accuracy"] < 1


# --- smoke training ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,memory", [("graph_traversal", "dnc"), ("graph_shortest_path", "none")])
def test_a_tiny_model_trains_and_the_loss_goes_down(name, memory, tmp_path):
    task_config = GraphTaskConfig(min_nodes=3, max_nodes=3, min_steps=1, max_steps=1, lessons=1, planning_steps=0,
                                  eval_max_nodes=4)
    config = run_config(name, task_config, ModelConfig(hidden=32, memory=memory, memory_slots=8, memory_width=8),
                        TrainConfig(updates=100, batch=8, lr=2e-2, eval_batch=4, log_every=10, eval_every=100,
                                    checkpoint_every=100, device="cpu"))
    train(config, tmp_path / name, quiet=True)
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    losses = [r["task_loss"] for r in records if r["kind"] == "train"]
    assert sum(losses[-2:]) < 0.85 * sum(losses[:2]), losses  # from 9·ln 10 ≈ 20.7 a step: digits get copied
    assert sorted(r["split"] for r in records if r["kind"] == "eval") == ["large", "train", "transit"]
    assert all(0 <= r[mode]["valid"] <= 1 for r in records if r["kind"] == "eval" for mode in ("soft", "hard"))
