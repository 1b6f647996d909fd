"""The graph language: labelled directed graphs, named relations and path queries as text.

A document (`graph.lark`, shipped as package data) lists edge triples `(source, destination,
label)`, nodes without edges, named composite relations and queries, one a line:

    (512, 87, 3)
    (87, 640, 3)
    (640, 512, 90)
    relation 41 = 3 3
    traverse 512 : 3 3 => 512 87 640       start, edge labels => the stations visited
    shortest 640 -> 87 => 640 512 87       start -> goal => a shortest path
    infer 41 from 512 => 640               relation from start => its end node

`parse_episode` turns text into an `Episode` (its `graph` a `networkx.MultiDiGraph` whose edges
carry a `label` attribute and are keyed by it) and `format_episode` prints one back, so that
`parse_episode(format_episode(e)) == e`; `parse_graph` / `format_graph` do the same for a bare
graph. The tasks of `diffvm.tasks.graphs` are generated as text and parsed by this module before
they are encoded as tensors.

An episode is well formed by construction: every triple has its three fields, no node has two
out-edges with one label (a label names the way out of a node), every node a query or an answer
names is in the graph, every relation a query names is defined, and the graph is not empty.
Errors are `GraphError`s (a `ValueError`) that give the line and column when they come from
text; syntax errors are `GraphSyntaxError`s and say what was expected.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass, field

import networkx as nx
from lark import Lark, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

__all__ = [
    "KEYWORDS", "Episode", "GraphError", "GraphSyntaxError", "Inference", "Label", "Query", "ShortestPath",
    "Traversal", "format_episode", "format_graph", "format_query", "parse_episode", "parse_graph",
]

Label = int | str  # a node, an edge label or a relation: a non-negative integer or a name
# Words of the language, which no name may be (a node named `node` would read as a declaration).
KEYWORDS = frozenset({"node", "relation", "traverse", "shortest", "infer", "from"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# An error quotes its line at most this many characters either side of the column.
QUOTE_MARGIN = 60
TRIPLE_FIELDS = ("source", "destination", "label")


class GraphError(ValueError):
    """A graph document or episode breaks a rule of the language (module docstring).

    Attributes:
        message: what is wrong.
        line, column: where (1-based), or None when the episode was not built from text.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 source: str | None = None):
        self.message, self.line, self.column = message, line, column
        text = message if line is None else f"line {line}, column {column}: {message}"
        if source is not None and line is not None:
            rows = source.split("\n")
            row = rows[line - 1] if line <= len(rows) else ""
            start = max(0, column - 1 - QUOTE_MARGIN)
            text += f"\n    {row[start:column + QUOTE_MARGIN]}\n    {' ' * (column - 1 - start)}^"
        super().__init__(text)


class GraphSyntaxError(GraphError):
    """Text that the grammar does not accept; the message says what was expected."""


def _check_label(value: Label, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise GraphError(f"{what} {value!r} must be a non-negative int or a name")
    if isinstance(value, int) and value < 0:
        raise GraphError(f"{what} {value} is negative; labels are non-negative integers or names")
    if isinstance(value, str) and (not _NAME.match(value) or value in KEYWORDS):
        raise GraphError(f"{what} {value!r} is not a name: letters, digits and _, not starting with a digit, "
                         f"and none of the keywords {', '.join(sorted(KEYWORDS))}")


# --- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traversal:
    """From `start`, follow the out-edge labelled `labels[0]`, then `labels[1]`, ….

    `answer`, when known: the stations visited, `start` first (len(labels) + 1 nodes).
    """

    start: Label
    labels: tuple[Label, ...]
    answer: tuple[Label, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.answer is not None:
            object.__setattr__(self, "answer", tuple(self.answer))
        if not self.labels:
            raise GraphError("a traversal needs at least one edge label")

    def nodes(self) -> tuple[Label, ...]:
        return (self.start, *(self.answer or ()))


@dataclass(frozen=True)
class ShortestPath:
    """A shortest path from `start` to `goal`; `answer`, when known, the path's nodes, both ends included."""

    start: Label
    goal: Label
    answer: tuple[Label, ...] | None = None

    def __post_init__(self):
        if self.answer is not None:
            object.__setattr__(self, "answer", tuple(self.answer))

    def nodes(self) -> tuple[Label, ...]:
        return (self.start, self.goal, *(self.answer or ()))


@dataclass(frozen=True)
class Inference:
    """Where the composite relation `relation` leads from `start`; `answer`, when known, that node."""

    relation: Label
    start: Label
    answer: Label | None = None

    def nodes(self) -> tuple[Label, ...]:
        return (self.start,) if self.answer is None else (self.start, self.answer)


Query = Traversal | ShortestPath | Inference


# --- episodes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """A graph (its triples in the order given), its relations and its queries (module docstring).

    Attributes:
        triples: (source, destination, label) edges, in order.
        nodes: nodes declared without an edge (`node 999`), in order.
        relations: (name, labels) pairs: relation `name` follows `labels` in turn.
        queries: the queries, in order.
    """

    triples: tuple[tuple[Label, Label, Label], ...]
    nodes: tuple[Label, ...] = ()
    relations: tuple[tuple[Label, tuple[Label, ...]], ...] = ()
    queries: tuple[Query, ...] = ()
    graph: nx.MultiDiGraph = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "triples", tuple(tuple(t) for t in self.triples))
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "relations", tuple((name, tuple(labels)) for name, labels in self.relations))
        object.__setattr__(self, "queries", tuple(self.queries))
        checker = _Checker()
        for t in self.triples:
            checker.edge(t)
        for n in self.nodes:
            checker.node(n)
        for name, labels in self.relations:
            checker.relation(name, labels)
        for q in self.queries:
            checker.query(q)
        object.__setattr__(self, "graph", checker.finish())

    @classmethod
    def from_graph(cls, graph: nx.MultiDiGraph | nx.DiGraph, queries=(), relations=()) -> Episode:
        """The episode of a networkx graph whose edges carry a `label`: its edges in the graph's
        order, then its nodes without edges."""
        triples = []
        for u, v, label in graph.edges(data="label"):
            if label is None:
                raise GraphError(f"edge ({u!r}, {v!r}) has no 'label' attribute")
            triples.append((u, v, label))
        isolated = tuple(n for n in graph.nodes if graph.degree(n) == 0)
        return cls(tuple(triples), isolated, tuple(relations), tuple(queries))

    def relation(self, name: Label) -> tuple[Label, ...]:
        """The labels relation `name` follows."""
        return dict(self.relations)[name]


class _Checker:
    """Builds an episode's graph item by item and refuses what breaks the rules (module docstring)."""

    def __init__(self):
        self.graph = nx.MultiDiGraph()
        self.relations: dict[Label, tuple[Label, ...]] = {}

    def edge(self, triple: tuple) -> None:
        if len(triple) != 3 or any(x is None for x in triple):
            missing = [f for f, x in zip(TRIPLE_FIELDS, (*triple, None, None, None)) if x is None]
            shown = ", ".join("" if x is None else str(x) for x in triple)
            raise GraphError(f"dangling edge ({shown}): an edge is a triple (source, destination, label); "
                             + (f"it has {len(triple)} fields" if len(triple) > 3 else f"no {' or '.join(missing)}"))
        source, destination, label = triple
        for what, value in zip(TRIPLE_FIELDS, triple):
            _check_label(value, what if what == "label" else f"{what} node")
        if source in self.graph and any(label in keys for keys in self.graph.succ[source].values()):
            raise GraphError(f"duplicate label {label} from node {source}: the labels of a node's out-edges must "
                             "differ, as a label names the way out of a node")
        self.graph.add_edge(source, destination, key=label, label=label)

    def node(self, node: Label) -> None:
        _check_label(node, "node")
        self.graph.add_node(node)

    def relation(self, name: Label, labels: tuple) -> None:
        _check_label(name, "relation")
        if name in self.relations:
            raise GraphError(f"relation {name} is defined twice")
        if not labels:
            raise GraphError(f"relation {name} follows no edge label")
        for label in labels:
            _check_label(label, "label")
        self.relations[name] = tuple(labels)

    def query(self, query: Query) -> None:
        if not isinstance(query, (Traversal, ShortestPath, Inference)):
            raise GraphError(f"a query must be a Traversal, ShortestPath or Inference, got {query!r}")
        if isinstance(query, Inference) and query.relation not in self.relations:
            raise GraphError(self.unknown_relation(query.relation))
        for node in query.nodes():
            _check_label(node, "node")
            if node not in self.graph:
                raise GraphError(self.unknown_node(node))

    def unknown_relation(self, name: Label) -> str:
        known = ", ".join(map(str, self.relations)) or "none is defined"
        return f"unknown relation {name} in a query; the relations: {known}"

    @staticmethod
    def unknown_node(node: Label) -> str:
        return f"unknown node {node} in a query: the graph has no such node"

    def finish(self) -> nx.MultiDiGraph:
        if self.graph.number_of_nodes() == 0:
            raise GraphError("empty graph: expected at least one edge (source, destination, label) or node")
        return self.graph


# --- printing --------------------------------------------------------------------------------


def _words(labels) -> str:
    return " ".join(map(str, labels))


def format_query(query: Query) -> str:
    """One query as a line of the language (without a newline)."""
    if isinstance(query, Traversal):
        text, answer = f"traverse {query.start} : {_words(query.labels)}", query.answer
    elif isinstance(query, ShortestPath):
        text, answer = f"shortest {query.start} -> {query.goal}", query.answer
    else:
        text = f"infer {query.relation} from {query.start}"
        answer = None if query.answer is None else (query.answer,)
    return text if answer is None else f"{text} => {_words(answer)}"


def format_episode(episode: Episode) -> str:
    """The text of an episode: its triples, nodes, relations and queries, one a line."""
    lines = [f"({s}, {d}, {label})" for s, d, label in episode.triples]
    lines += [f"node {n}" for n in episode.nodes]
    lines += [f"relation {name} = {_words(labels)}" for name, labels in episode.relations]
    lines += [format_query(q) for q in episode.queries]
    return "\n".join(lines) + "\n"


def format_graph(graph: nx.MultiDiGraph | nx.DiGraph) -> str:
    """The text of a networkx graph whose edges carry a `label` attribute."""
    return format_episode(Episode.from_graph(graph))


# --- parsing ---------------------------------------------------------------------------------


@functools.cache
def _parser() -> tuple[Lark, _Builder, threading.Lock]:
    """The parser, with its builder run as the parser reduces (no tree is built: 2x faster, and
    the tasks parse every episode they train on), and the lock that gives one parse at a time."""
    builder = _Builder()
    parser = Lark.open_from_package("diffvm.tasks", "graph.lark", parser="lalr", maybe_placeholders=True,
                                    transformer=builder)
    return parser, builder, threading.Lock()


class _Token:
    """A label with the place it was written, so that an error about it can point at it."""

    __slots__ = ("value", "line", "column")

    def __init__(self, value: Label, line: int, column: int):
        self.value, self.line, self.column = value, line, column


class _Builder(Transformer):
    """Builds an `Episode` as the parser reduces; one method per rule alias of graph.lark."""

    def __init__(self):
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.checker = _Checker()
        self.triples, self.nodes, self.relations, self.queries = [], [], [], []

    def number(self, children):
        return _Token(int(children[0]), children[0].line, children[0].column)

    def name(self, children):
        token = children[0]
        if str(token) in KEYWORDS:
            raise GraphError(f"the keyword {str(token)!r} cannot name a node, label or relation",
                             line=token.line, column=token.column)
        return _Token(str(token), token.line, token.column)

    def edge(self, children):
        paren, *fields = children
        triple = tuple(None if c is None else c.value for c in fields)
        try:
            self.checker.edge(triple)
        except GraphError as e:
            raise GraphError(e.message, line=paren.line, column=paren.column) from None
        self.triples.append(triple)

    def node(self, children):
        self.checker.node(children[0].value)
        self.nodes.append(children[0].value)

    def relation(self, children):
        name, *labels = children
        try:
            self.checker.relation(name.value, tuple(t.value for t in labels))
        except GraphError as e:
            raise GraphError(e.message, line=name.line, column=name.column) from None
        self.relations.append((name.value, tuple(t.value for t in labels)))

    def answer(self, children):
        return children

    def _query(self, query: Query, relation: _Token | None, nodes: list[_Token]) -> None:
        """Queries are checked at the end, when every edge is known; the tokens place an error."""
        self.queries.append((query, relation, nodes))

    def _check_queries(self) -> None:
        for query, relation, nodes in self.queries:
            if relation is not None and relation.value not in self.checker.relations:
                raise GraphError(self.checker.unknown_relation(relation.value), line=relation.line,
                                 column=relation.column)
            for token in nodes:
                if token.value not in self.checker.graph:
                    raise GraphError(self.checker.unknown_node(token.value), line=token.line, column=token.column)
            self.checker.query(query)

    def traverse(self, children):
        start, *labels, answer = children
        value = None if answer is None else tuple(t.value for t in answer)
        self._query(Traversal(start.value, tuple(t.value for t in labels), value), None, [start, *(answer or ())])

    def shortest(self, children):
        start, goal, answer = children
        value = None if answer is None else tuple(t.value for t in answer)
        self._query(ShortestPath(start.value, goal.value, value), None, [start, goal, *(answer or ())])

    def infer(self, children):
        relation, start, answer = children
        if answer is not None and len(answer) != 1:
            raise GraphError(f"an inference has one answer node, got {len(answer)}",
                             line=answer[1].line, column=answer[1].column)
        value = None if answer is None else answer[0].value
        self._query(Inference(relation.value, start.value, value), relation, [start, *(answer or ())])

    def start(self, children):
        self.checker.finish()
        self._check_queries()
        return Episode(tuple(self.triples), tuple(self.nodes), tuple(self.relations),
                       tuple(q for q, _, _ in self.queries))


# How a syntax error names the terminals that are not literal strings.
_TERMINALS = {"NAME": "a name", "INT": "a number", "_NL": "a newline", "$END": "the end of the text"}


def _describe(terminal: str) -> str:
    if terminal in _TERMINALS:
        return _TERMINALS[terminal]
    return repr(_parser()[0].get_terminal(terminal).pattern.value)


def _syntax_error(e: UnexpectedInput) -> GraphSyntaxError:
    if isinstance(e, UnexpectedToken):
        token = e.token
        at_end = token.type == "$END"
        line, column = (token.end_line, token.end_column) if at_end else (token.line, token.column)
        unexpected = ("end of the text" if at_end else "newline" if token.type == "_NL"
                      else f"{_TERMINALS.get(token.type, 'token').removeprefix('a ')} {str(token)!r}")
        allowed = e.interactive_parser.accepts()  # e.expected may hold lookaheads merged from other states
    elif isinstance(e, UnexpectedCharacters):
        line, column, unexpected, allowed = e.line, e.column, f"character {e.char!r}", e.allowed or ()
    else:  # the lexer ran out where a token was due
        line, column, unexpected, allowed = None, None, "end of the text", e.expected
    expected = " or ".join(sorted({_describe(t) for t in allowed})) or "nothing"
    return GraphSyntaxError(f"unexpected {unexpected}; expected {expected}", line=line, column=column)


def parse_episode(text: str) -> Episode:
    """The episode that `text` describes (module docstring).

    Raises:
        GraphSyntaxError: text outside the grammar, with line, column and what was expected.
        GraphError: with line and column: a dangling edge, a duplicate label from one source, an
            unknown node or relation in a query, a keyword used as a name; an empty graph (at
            the end of the text).
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_episode needs a str, got {type(text).__name__}")
    parser, builder, lock = _parser()
    with lock:
        builder.reset()
        try:
            return parser.parse(text)
        except UnexpectedInput as e:
            error = _syntax_error(e)
            raise GraphSyntaxError(error.message, line=error.line, column=error.column, source=text) from None
        except GraphError as error:
            if error.line is None:  # an empty graph: the whole text is to blame, point at its end
                lines = text.split("\n")
                error = GraphError(error.message, line=len(lines), column=len(lines[-1]) + 1)
            raise GraphError(error.message, line=error.line, column=error.column, source=text) from None


def parse_graph(text: str) -> nx.MultiDiGraph:
    """The graph of a document (its queries and relations are checked, then dropped)."""
    return parse_episode(text).graph
