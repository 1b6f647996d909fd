"""The graph language: parse(print(x)) == x, the parsed networkx graph, and errors with line and column."""

from __future__ import annotations

import importlib.resources

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.tasks.graph_text import (
    KEYWORDS,
    Episode,
    GraphError,
    GraphSyntaxError,
    Inference,
    ShortestPath,
    Traversal,
    format_episode,
    format_graph,
    format_query,
    parse_episode,
    parse_graph,
)
from diffvm.tasks.graphs import random_graph, transit_graph

EXAMPLE = """\
# a small graph
(512, 87, 3)
(87, 640, 3)   # the second edge
(640, 512, 90)

node kitchen
relation 41 = 3 3
traverse 512 : 3 3 => 512 87 640
shortest 640 -> 87 => 640 512 87
infer 41 from 512 => 640
shortest 87 -> 512
"""


def test_the_example_parses_into_triples_queries_and_a_labelled_multidigraph():
    e = parse_episode(EXAMPLE)
    assert e.triples == ((512, 87, 3), (87, 640, 3), (640, 512, 90))
    assert e.nodes == ("kitchen",)
    assert e.relations == ((41, (3, 3)),)
    assert e.queries == (Traversal(512, (3, 3), (512, 87, 640)), ShortestPath(640, 87, (640, 512, 87)),
                         Inference(41, 512, 640), ShortestPath(87, 512))
    assert isinstance(e.graph, nx.MultiDiGraph)
    assert sorted(e.graph.edges(keys=True, data="label")) == [(87, 640, 3, 3), (512, 87, 3, 3), (640, 512, 90, 90)]
    assert set(e.graph.nodes) == {512, 87, 640, "kitchen"}
    assert e.relation(41) == (3, 3)


def test_printing_gives_the_canonical_text_and_parses_back_to_the_same_episode():
    e = parse_episode(EXAMPLE)
    text = format_episode(e)
    assert text.splitlines() == ["(512, 87, 3)", "(87, 640, 3)", "(640, 512, 90)", "node kitchen",
                                 "relation 41 = 3 3", "traverse 512 : 3 3 => 512 87 640",
                                 "shortest 640 -> 87 => 640 512 87", "infer 41 from 512 => 640", "shortest 87 -> 512"]
    assert parse_episode(text) == e
    assert format_query(Inference("uncle", "ann")) == "infer uncle from ann"


# Hypothesis: episodes with up to 8 nodes named by ints or names, labels unique per source.
_labels = st.one_of(st.integers(0, 2000), st.sampled_from(["a", "kitchen", "B_2", "_x", "north"]))


@st.composite
def episodes(draw) -> Episode:
    nodes = draw(st.lists(_labels, min_size=1, max_size=8, unique=True))
    triples, used = [], set()
    for _ in range(draw(st.integers(0, 14))):
        s, d, label = draw(st.sampled_from(nodes)), draw(st.sampled_from(nodes)), draw(_labels)
        if (s, label) not in used:
            used.add((s, label))
            triples.append((s, d, label))
    with_edges = {x for s, d, _ in triples for x in (s, d)}
    isolated = tuple(n for n in nodes if n not in with_edges)
    relations = tuple((f"r{i}", tuple(draw(st.lists(_labels, min_size=1, max_size=3))))
                      for i in range(draw(st.integers(0, 2))))
    queries = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["traverse", "shortest", "infer"] if relations else ["traverse", "shortest"]))
        start = draw(st.sampled_from(nodes))
        answer = draw(st.none() | st.lists(st.sampled_from(nodes), min_size=1, max_size=4).map(tuple))
        if kind == "traverse":
            queries.append(Traversal(start, tuple(draw(st.lists(_labels, min_size=1, max_size=3))), answer))
        elif kind == "shortest":
            queries.append(ShortestPath(start, draw(st.sampled_from(nodes)), answer))
        else:
            queries.append(Inference(draw(st.sampled_from(relations))[0], start, answer and answer[0]))
    return Episode(tuple(triples), isolated, relations, tuple(queries))


@settings(max_examples=60, deadline=None)
@given(episodes())
def test_parse_of_print_is_the_episode_and_its_graph(episode):
    text = format_episode(episode)
    again = parse_episode(text)
    assert again == episode
    assert format_episode(again) == text
    assert nx.utils.graphs_equal(again.graph, episode.graph)
    assert nx.utils.graphs_equal(parse_graph(format_graph(episode.graph)), episode.graph)


def _bare(graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """The graph without node attributes (positions are not part of the text)."""
    out = nx.MultiDiGraph()
    out.add_nodes_from(graph.nodes)
    out.add_edges_from(graph.edges(keys=True, data=True))
    return out


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 12), st.integers(1, 4))
def test_generated_graphs_survive_printing_and_parsing(seed, nodes, degree):
    rng = np.random.default_rng(seed)
    for g in (random_graph(rng, nodes, (1, degree)), transit_graph(rng, max(nodes, 3), 2)):
        parsed = parse_graph(format_graph(g))
        assert nx.utils.graphs_equal(parsed, _bare(g))


def test_a_digraph_with_labels_prints_and_one_without_is_refused():
    g = nx.DiGraph()
    g.add_edge(1, 2, label=7)
    g.add_node(9)
    assert format_graph(g) == "(1, 2, 7)\nnode 9\n"
    assert list(parse_graph(format_graph(g)).edges(keys=True, data="label")) == [(1, 2, 7, 7)]
    g.add_edge(2, 3)
    with pytest.raises(GraphError, match=r"edge \(2, 3\) has no 'label' attribute"):
        format_graph(g)


def test_the_grammar_is_package_data():
    assert importlib.resources.files("diffvm.tasks").joinpath("graph.lark").is_file()


# --- malformed text ----------------------------------------------------------------------------


@pytest.mark.parametrize("text,line,column,message", [
    ("(1, 2, 3)\n(1, , 4)\n", 2, 1, r"dangling edge \(1, , 4\): .* no destination"),
    ("(1, 2)\n", 1, 1, r"dangling edge \(1, 2\): .* no label"),
    ("(, 2, 5)\n", 1, 1, r"dangling edge \(, 2, 5\): .* no source"),
    ("(1, 2, 3, 4)\n", 1, 1, r"dangling edge \(1, 2, 3, 4\): .* it has 4 fields"),
    ("(1, 2, 3)\n(2, 1, 3)\n(1, 4, 3)\n", 3, 1, r"duplicate label 3 from node 1"),
    ("(1, 2, 3)\nshortest 1 -> 9\n", 2, 15, r"unknown node 9 in a query"),
    ("(1, 2, 3)\ntraverse 1 : 3 => 1 2 77\n", 2, 23, r"unknown node 77 in a query"),
    ("(1, 2, 3)\ninfer 5 from 1\n", 2, 7, r"unknown relation 5 in a query"),
    ("", 1, 1, r"empty graph"),
    ("# nothing here\n\n", 3, 1, r"empty graph"),
    ("node 7\ntraverse 1 : 1\n", 2, 10, r"unknown node 1 in a query"),
    ("(1, node, 3)\n", 1, 5, r"the keyword 'node' cannot name"),
    ("(1, 2, 3)\ninfer 4 from 1 => 1 2\n", 2, 21, r"an inference has one answer node, got 2"),
    ("(1, 2, 3)\nrelation 4 = 3\nrelation 4 = 3\n", 3, 10, r"relation 4 is defined twice"),
], ids=["dangling-destination", "dangling-two-fields", "dangling-source", "four-fields", "duplicate-label",
        "unknown-goal", "unknown-answer-node", "unknown-relation", "empty", "empty-with-comment",
        "unknown-node-no-edges", "keyword-as-name", "two-inference-answers", "relation-twice"])
def test_malformed_text_is_refused_with_line_and_column(text, line, column, message):
    with pytest.raises(GraphError, match=message) as info:
        parse_episode(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert str(info.value).startswith(f"line {line}, column {column}: ")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("text,line,column,expected", [
    ("(1, 2, 3\n", 1, 9, "')' or ','"),
    ("(1, 2, 3)\ntraverse 1 3\n", 2, 12, "':'"),
    ("(1, 2, 3) (2, 3, 4)\n", 1, 11, "a newline"),
    ("(1, 2, 3)\nshortest 1 => 2\n", 2, 12, "'->'"),
    ("(01, 2, 3)\n", 1, 3, "')' or ','"),
    ("(1, 2, -3)\n", 1, 8, "character '-'"),
])
def test_syntax_errors_say_where_and_what_was_expected(text, line, column, expected):
    with pytest.raises(GraphSyntaxError) as info:
        parse_episode(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert expected in str(info.value)
    assert "^" in str(info.value)  # the line is quoted with a caret under the column


def test_episodes_built_in_python_follow_the_same_rules_without_a_place():
    with pytest.raises(GraphError, match="duplicate label 3 from node 1") as info:
        Episode(((1, 2, 3), (1, 4, 3)))
    assert info.value.line is None
    with pytest.raises(GraphError, match="empty graph"):
        Episode(())
    with pytest.raises(GraphError, match="unknown node 5 in a query"):
        Episode(((1, 2, 3),), queries=(ShortestPath(1, 5),))
    with pytest.raises(GraphError, match="dangling edge"):
        Episode(((1, None, 3),))
    for bad in (-1, "not a name", True, *sorted(KEYWORDS)[:2]):
        with pytest.raises(GraphError, match="must be a non-negative int|is negative|is not a name"):
            Episode(((1, bad, 3),))
    with pytest.raises(GraphError, match="at least one edge label"):
        Traversal(1, ())
    with pytest.raises(TypeError, match="needs a str"):
        parse_episode(b"(1, 2, 3)")
