import random
import re
from collections import Counter

import numpy as np
import pytest

from diffvm.programs.snippets import IfExp, Num, evaluate, parse_snippet
from diffvm.tasks.l2e import (
    COMBINED_MIX_PROBABILITY,
    MAX_NESTING,
    OPERATIONS,
    SPLITS,
    VOCABULARY,
    Curriculum,
    addition_example,
    decode,
    encode,
    memorisation_example,
    program_example,
    sample_examples,
    sample_snippet,
    split_of,
)

# Chi-square critical value for 5 degrees of freedom at p = 0.001: a fair six-way draw exceeds it
# once in a thousand runs (the seeds are fixed, so these tests do not flake).
CHI2_5DOF_P001 = 20.52


def _chi2(counts, expected):
    return sum((c - expected) ** 2 / expected for c in counts)


# --- the published program distribution -----------------------------------------------------

# At nesting 1 each operation kind has one shape. Roles of the numbers: N a constant in
# [1, 10**length], K a small number in [1, 4·length], M either (a multiplication's two operands).
N = r"(\d+)"
SHAPES = {
    "pair": (rf"print\(\({N}[+-]{N}\)\)@", "NN"),
    "small_mul": (rf"print\(\({N}\*{N}\)\)@", "MM"),
    "identity": (rf"print\({N}\)@", "N"),
    "variable": (rf"([a-j])={N};#print\(\(\1[+-]{N}\)\)@", "vNN"),
    "small_loop": (rf"([a-j])={N}#for x in range\({N}\):\1[+-]={N}#print\(\1\)@", "vNKN"),
    "conditional": (rf"print\(\({N} if {N}[<>]{N} else {N}\)\)@", "NNNN"),
}


@pytest.mark.parametrize("length", [1, 4, 9])
def test_nesting_one_programs_have_the_published_shapes_and_ranges(length):
    rng = np.random.default_rng(length)
    seen = Counter()
    for _ in range(600):
        example = program_example(rng, length, 1)
        (kind,) = example.operations
        seen[kind] += 1
        pattern, roles = SHAPES[kind]
        match = re.fullmatch(pattern, example.text)
        assert match, (kind, example.text)
        numbers = {role: [] for role in "vNKM"}
        for role, text in zip(roles, match.groups()):
            numbers[role].append(int(text) if role != "v" else text)
        assert all(1 <= n <= 10**length for n in numbers["N"] + numbers["M"]), (kind, example.text)
        assert all(1 <= k <= 4 * length for k in numbers["K"]), (kind, example.text)
        assert not numbers["M"] or min(numbers["M"]) <= 4 * length, (kind, example.text)
        assert example.target == f"{evaluate(parse_snippet(example.text))}."
    assert set(seen) == set(OPERATIONS)


def test_operation_kinds_are_uniform_over_six():
    rng = np.random.default_rng(0)
    counts = Counter(k for _ in range(2000) for k in sample_snippet(rng, 3, 3)[1])
    assert _chi2([counts[k] for k in OPERATIONS], 6000 / 6) < CHI2_5DOF_P001, counts


def test_the_previous_result_fills_a_uniformly_chosen_operand():
    rng = np.random.default_rng(1)
    slots = Counter()
    while sum(slots.values()) < 1200:
        snippet, kinds = sample_snippet(rng, 2, 2)
        if kinds[1] == "conditional" and kinds[0] in ("pair", "small_mul", "variable", "conditional"):
            e = snippet.result  # the first operation passed on an operation, not a constant
            operands = (e.test.left, e.test.right, e.body, e.orelse)
            slots[next(i for i, o in enumerate(operands) if not isinstance(o, Num))] += 1
    assert _chi2([slots[i] for i in range(4)], 300) < 16.27, slots  # 3 dof, p = 0.001


def test_constants_and_small_numbers_cover_their_ranges_uniformly():
    rng = np.random.default_rng(2)
    constants, smalls = [], []
    for _ in range(3000):
        snippet, kinds = sample_snippet(rng, 1, 1)
        e = snippet.result
        if kinds == ("pair",):
            constants += [e.left.value, e.right.value]
        elif kinds == ("small_loop",):
            smalls.append(snippet.statements[1].count)
    assert sorted(set(constants)) == list(range(1, 11))
    assert _chi2(np.bincount(constants)[1:], len(constants) / 10) < 27.88  # 9 dof, p = 0.001
    assert sorted(set(smalls)) == [1, 2, 3, 4]


def _reference_program(r: random.Random, length: int, nesting: int) -> str:
    """The published generator written independently, as strings (the authors' code builds text too)."""
    code, previous, fresh = [], None, iter(r.sample("abcdefghij", 10))

    def operands(n):
        values = [str(r.randint(1, 10**length)) for _ in range(n)]
        if previous is not None:
            values[r.randrange(n)] = previous
        return values

    for _ in range(nesting):
        kind = r.randrange(6)
        sign, small = r.choice("+-"), r.randint(1, 4 * length)
        if kind == 0:
            a, b = operands(2)
            previous = f"({a}{sign}{b})"
        elif kind == 1:
            (a,) = operands(1)
            previous = r.choice([f"({a}*{small})", f"({small}*{a})"])
        elif kind == 2:
            (previous,) = operands(1)
        elif kind == 3:
            v, (a, b) = next(fresh), operands(2)
            code.append(f"{v}={a};")
            previous = f"({v}{sign}{b})"
        elif kind == 4:
            v, (a, b) = next(fresh), operands(2)
            code += [f"{v}={a}", f"for x in range({small}):{v}{sign}={b}"]
            previous = v
        else:
            a, b, c, d = operands(4)
            previous = f"({c} if {a}{r.choice('<>')}{b} else {d})"
    return "".join(f"{line}#" for line in code) + f"print({previous})@"


@pytest.mark.parametrize("length, nesting", [(4, 1), (4, 2), (4, 3), (6, 2)])
def test_mean_lengths_match_an_independent_generator(length, nesting):
    n = 3000
    ours = np.array([len(e.text) for e in sample_examples(
        np.random.default_rng(3), n, Curriculum("baseline", length, nesting))])
    r = random.Random(3)
    theirs = np.array([len(_reference_program(r, length, nesting)) for _ in range(n)])
    spread = np.sqrt(ours.var() / n + theirs.var() / n)
    assert abs(ours.mean() - theirs.mean()) < 4 * spread, (ours.mean(), theirs.mean())
    # the reference's text is a snippet too, and parses
    assert parse_snippet(_reference_program(r, length, nesting))


def test_every_text_is_a_snippet_printing_its_target():
    rng = np.random.default_rng(4)
    for strategy in ("mix", "combined"):
        for example in sample_examples(rng, 200, Curriculum(strategy, 6, 4)):
            assert example.target == f"{evaluate(parse_snippet(example.text))}."


# --- seeding -------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_examples_and_no_global_state_is_read():
    curriculum = Curriculum("combined", 5, 3, length=2, nesting=2)
    np.random.seed(0)
    random.seed(0)
    first = sample_examples(np.random.default_rng(7), 50, curriculum)
    np.random.seed(1)
    random.seed(1)
    again = sample_examples(np.random.default_rng(7), 50, curriculum)
    assert first == again
    assert first != sample_examples(np.random.default_rng(8), 50, curriculum)


# --- curricula ---------------------------------------------------------------------------------


def test_baseline_and_naive_draw_the_target_and_the_current_stage():
    rng = np.random.default_rng(5)
    assert {Curriculum("baseline", 4, 3, length=2).draw(rng) for _ in range(50)} == {(4, 3)}
    assert {Curriculum("naive", 4, 3, length=2, nesting=3).draw(rng) for _ in range(50)} == {(2, 3)}


def test_mix_draws_length_and_nesting_uniformly_and_independently():
    rng = np.random.default_rng(6)
    draws = Counter(Curriculum("mix", 4, 3, length=2).draw(rng) for _ in range(6000))
    assert set(draws) == {(a, b) for a in range(1, 5) for b in range(1, 4)}
    assert _chi2(list(draws.values()), 500) < 31.26  # 11 dof, p = 0.001


def test_combined_is_mix_one_time_in_five_else_naive():
    rng = np.random.default_rng(7)
    curriculum = Curriculum("combined", 9, 3, length=5, nesting=2)
    draws = [curriculum.draw(rng) for _ in range(10_000)]
    # mix hits the current stage (5, 2) with probability 1/27; naive always does
    naive = sum(d == (5, 2) for d in draws)
    mix_share = (len(draws) - naive) / len(draws) * 27 / 26
    assert abs(mix_share - COMBINED_MIX_PROBABILITY) < 0.015, mix_share


def test_harder_adds_digits_then_nesting_and_stops_at_the_target():
    stages, c = [], Curriculum("naive", 3, 2)
    while not c.at_target:
        stages.append((c.length, c.nesting))
        c = c.harder()
    assert stages == [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2)]
    assert c.harder() == c == Curriculum("naive", 3, 2, length=3, nesting=2)


@pytest.mark.parametrize("build, message", [
    (lambda: Curriculum("easy", 4, 1), "strategy must be one of baseline, naive, mix, combined"),
    (lambda: Curriculum("mix", 0, 1), r"length must be an int in \[1, 18\]"),
    (lambda: Curriculum("mix", 4, MAX_NESTING + 1), r"nesting must be an int in \[1, 10\]"),
    (lambda: Curriculum("mix", 4, 2, length=5), r"length must be in \[1, target_length=4\]"),
    (lambda: sample_examples(np.random.default_rng(0), 1, Curriculum("mix", 4, 2), task="sorting"),
     "task must be one of programs, addition, memorisation"),
    (lambda: sample_examples(np.random.default_rng(0), 1, Curriculum("mix", 4, 2), split="dev"), "split must be"),
])
def test_bad_settings_name_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# --- splits, addition, memorisation, vocabulary ----------------------------------------------


def test_splits_are_disjoint_and_each_about_a_third():
    curriculum = Curriculum("baseline", 2, 1)
    texts = {s: {e.text for e in sample_examples(np.random.default_rng(8), 300, curriculum, split=s)} for s in SPLITS}
    assert not (texts["train"] & texts["validation"] or texts["train"] & texts["test"]
                or texts["validation"] & texts["test"])
    shares = Counter(split_of(e) for e in sample_examples(np.random.default_rng(9), 3000, curriculum))
    assert _chi2([shares[s] for s in SPLITS], 1000) < 13.82, shares  # 2 dof, p = 0.001


@pytest.mark.parametrize("length", [1, 5, 9])
def test_addition_adds_two_numbers_of_length_digits(length):
    rng = np.random.default_rng(length)
    for _ in range(100):
        example = addition_example(rng, length)
        a, b = re.fullmatch(r"print\((\d+)\+(\d+)\)@", example.text).groups()
        assert len(a) == len(b) == length
        assert example.target == f"{int(a) + int(b)}." == f"{evaluate(parse_snippet(example.text))}."


def test_memorisation_repeats_a_number_of_length_digits():
    example = memorisation_example(np.random.default_rng(0), 7)
    (n,) = re.fullmatch(r"print\((\d{7})\)@", example.text).groups()
    assert example.target == f"{n}."
    assert parse_snippet(example.text).result == Num(int(n))


def test_the_vocabulary_is_the_42_characters_of_the_data():
    assert len(VOCABULARY) == len(set(VOCABULARY)) == 42
    rng = np.random.default_rng(10)
    used = set()
    for _ in range(3000):
        example = program_example(rng, 9, 3)
        used |= set(example.text + example.target)
    assert used == set(VOCABULARY)


def test_encode_and_decode_are_inverse_and_refuse_what_is_outside():
    example = program_example(np.random.default_rng(11), 4, 3)
    for text in (example.text, example.target):
        ids = encode(text)
        assert ids.dtype == np.int64 and ids.shape == (len(text),)
        assert decode(ids) == text
    with pytest.raises(ValueError, match=r"character 'y' at index 2 is not in the vocabulary"):
        encode("a=y")
    with pytest.raises(ValueError, match=r"index 42 at position 1 is outside the vocabulary \[0, 42\)"):
        decode([0, 42])


def test_a_conditional_keeps_both_branches_as_operands():
    rng = np.random.default_rng(12)
    for _ in range(200):
        snippet, kinds = sample_snippet(rng, 3, 1)
        if kinds == ("conditional",):
            assert isinstance(snippet.result, IfExp)
            assert all(isinstance(o, Num) for o in (snippet.result.body, snippet.result.orelse))
            return
    pytest.fail("no conditional in 200 draws")
