"""Prompt language (modules/prompt_parser.py) against A1111 v1.10.1 parity data, its doctests, independent
computations, and hostile input."""

from __future__ import annotations

import doctest
import json
import random
import re
import time
from pathlib import Path

import pytest

from modules import prompt_parser
from modules.prompt_parser import (
    get_learned_conditioning_prompt_schedules,
    get_multicond_prompt_list,
    parse_prompt_attention,
    re_weight,
    strip_comments,
)

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


SCHEDULES = load("prompt_schedules.json")["cases"]
ATTENTION = load("prompt_attention.json")["cases"]
MULTICOND = load("multicond.json")


def schedule(prompt: str, steps: int, hires_steps: int | None = None, old: bool = False) -> list[list]:
    return get_learned_conditioning_prompt_schedules([prompt], steps, hires_steps, old)[0]


# ---------------------------------------------------------------------------------------------------------------
# Parity data and doctests
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SCHEDULES, ids=lambda c: repr(c["prompt"])[:40])
def test_schedules_parity(case: dict) -> None:
    got = schedule(case["prompt"], case["steps"], case["hires_steps"], case["use_old_scheduling"])
    if case.get("hash_seed_dependent"):
        # A1111's parser resolves these ambiguous prompts differently per string-hash seed: any of its results.
        assert got in case["expected_alternatives"]
    else:
        assert got == case["expected"]
    assert all(type(end) is int for end, _ in got)


def test_schedules_parity_unreadable_prompts_are_literal() -> None:
    unreadable = [c for c in SCHEDULES if not c["parses"]]
    assert len(unreadable) > 50
    for case in unreadable:
        time_base = case["steps"] if case["hires_steps"] is None or case["use_old_scheduling"] else case["hires_steps"]
        assert schedule(case["prompt"], case["steps"], case["hires_steps"], case["use_old_scheduling"]) == [
            [time_base, case["prompt"]]
        ]


@pytest.mark.parametrize("case", ATTENTION, ids=lambda c: repr(c["text"])[:40])
def test_attention_parity(case: dict) -> None:
    if "expected_error" in case:
        with pytest.raises(ValueError) as info:
            parse_prompt_attention(case["text"])
        # A1111's type, or a subclass of it (PromptWeightError is also a UserError, so the API answers 400)
        assert case["expected_error"] in [t.__name__ for t in type(info.value).__mro__]
        return
    got = parse_prompt_attention(case["text"])
    assert got == case["expected"]
    # weights are float64 products in A1111's order: compare bit-exactly, int -1 BREAK markers included
    assert [(t, repr(w)) for t, w in got] == [(t, repr(w)) for t, w in case["expected"]]


@pytest.mark.parametrize("case", MULTICOND["cases"], ids=lambda c: repr(c["prompt"])[:40])
def test_multicond_parity(case: dict) -> None:
    res_indexes, flat, _ = get_multicond_prompt_list([case["prompt"]])
    got = [[flat[index], weight] for index, weight in res_indexes[0]]
    assert got == case["expected"]
    assert [repr(w) for _, w in got] == [repr(w) for _, w in case["expected"]]


@pytest.mark.parametrize("case", MULTICOND["batch_cases"], ids=lambda c: repr(c["prompts"])[:40])
def test_multicond_batch_parity(case: dict) -> None:
    res_indexes, flat, indexes = get_multicond_prompt_list(case["prompts"])
    assert list(flat) == case["flat_prompts"]
    assert [[list(pair) for pair in prompt] for prompt in res_indexes] == case["indexes"]
    assert indexes == {text: i for i, text in enumerate(case["flat_prompts"])}


def test_a1111_doctests() -> None:
    text = (FIXTURES / "prompt_parser_doctests.txt").read_text(encoding="utf-8")
    globs = {
        "get_learned_conditioning_prompt_schedules": get_learned_conditioning_prompt_schedules,
        "parse_prompt_attention": parse_prompt_attention,
    }
    test = doctest.DocTestParser().get_doctest(text, globs, "a1111_doctests", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    assert len(test.examples) >= 25


def test_module_doctests() -> None:
    result = doctest.testmod(prompt_parser, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 4


# ---------------------------------------------------------------------------------------------------------------
# Schedules: independent computation from randomly built prompt trees
# ---------------------------------------------------------------------------------------------------------------

PLAIN_PIECES = ["cat", "a dog", " ", ", ", "1girl", "best quality", "\\(", "\\]", "\\:", "\\|", "0.5", "\t", "é"]
NUMBERS = ["1", "3", "7", "12", "25", "0", "-2", "+4", ".5", "0.25", "0.9", "1.5", "1.25", "2.", "1e1", "3E0", "5e-1"]


class Tree:
    """A prompt built from the grammar, with the schedule semantics of the parity README computed directly."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def prompt(self, depth: int) -> tuple[str, list]:
        text_parts, nodes = [], []
        for _ in range(self.rng.randint(0, 3)):
            text, node = self.item(depth)
            text_parts.append(text)
            nodes.append(node)
        return "".join(text_parts), nodes

    def item(self, depth: int) -> tuple[str, object]:
        kind = self.rng.choice(["plain", "plain", "round", "square", "scheduled", "alternate"] if depth else ["plain"])
        if kind == "plain":
            text = "".join(self.rng.choice(PLAIN_PIECES) for _ in range(self.rng.randint(1, 2)))
            return text, text
        if kind == "round":
            text, nodes = self.prompt(depth - 1)
            if self.rng.random() < 0.5:
                text2, nodes2 = self.prompt(depth - 1)
                return f"({text}:{text2})", ["(", nodes, ":", nodes2, ")"]
            return f"({text})", ["(", nodes, ")"]
        if kind == "square":
            text, nodes = self.prompt(depth - 1)
            return f"[{text}]", ["[", nodes, "]"]
        if kind == "scheduled":
            after, after_nodes = self.prompt(depth - 1)
            number = self.rng.choice(NUMBERS)
            ws = self.rng.choice(["", " ", "\n"])
            if self.rng.random() < 0.7:
                before, before_nodes = self.prompt(depth - 1)
                return f"[{before}:{after}:{ws}{number}{ws}]", ("scheduled", before_nodes, after_nodes, number)
            return f"[{after}:{number}]", ("scheduled", [], after_nodes, number)
        options = [self.prompt(depth - 1) for _ in range(self.rng.randint(2, 4))]
        return "[" + "|".join(text for text, _ in options) + "]", ("alternate", [nodes for _, nodes in options])


def expected_schedule(nodes: list, steps: int, hires_steps: int | None, old: bool) -> list[list]:
    """The parity README's time base, boundary and rendering rules, applied to a known tree."""
    if hires_steps is None or old:
        time_base, int_offset, frac_offset = steps, 0, 0.0
    else:
        time_base, int_offset, frac_offset = hires_steps, steps, 1.0

    def when(number: str) -> int:
        v = float(number)
        if old:
            v = v * time_base if v < 1 else v
        elif "." in number:
            v = (v - frac_offset) * time_base
        else:
            v = v - int_offset
        return min(time_base, int(v))

    boundaries = {time_base}

    def collect(node: object) -> None:
        if isinstance(node, list):
            for child in node:
                collect(child)
        elif isinstance(node, tuple) and node[0] == "scheduled":
            if when(node[3]) >= 1:
                boundaries.add(when(node[3]))
            collect(node[1])
            collect(node[2])
        elif isinstance(node, tuple):
            boundaries.update(range(1, time_base + 1))
            collect(node[1])

    def render(node: object, t: int) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, list):
            return "".join(render(child, t) for child in node)
        if node[0] == "scheduled":
            return render(node[1] if t <= when(node[3]) else node[2], t)
        return render(node[1][(t - 1) % len(node[1])], t)

    collect(nodes)
    return [[t, render(nodes, t)] for t in sorted(boundaries)]


@pytest.mark.parametrize("seed", range(4))
def test_schedules_match_independent_semantics(seed: int) -> None:
    rng = random.Random(seed)
    tree = Tree(rng)
    for _ in range(500):
        text, nodes = tree.prompt(depth=3)
        steps = rng.randint(1, 30)
        hires_steps = rng.choice([None, rng.randint(1, 30)])
        old = rng.random() < 0.3
        got = schedule(text, steps, hires_steps, old)
        assert got == expected_schedule(nodes, steps, hires_steps, old), text


def test_schedule_end_steps_increase_to_the_step_count() -> None:
    rng = random.Random(7)
    alphabet = list("()[]:| abc123.\\") + ["[a:b:2]", "[x|y]", ":0.5]", "[c:", "AND", "BREAK"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        steps = rng.randint(1, 40)
        hires_steps = rng.choice([None, rng.randint(1, 40)])
        old = rng.random() < 0.5
        got = schedule(text, steps, hires_steps, old)
        ends = [end for end, _ in got]
        time_base = hires_steps if hires_steps is not None and not old else steps
        assert ends == sorted(set(ends)) and ends[-1] == time_base and ends[0] >= 1
        assert all(isinstance(t, str) for _, t in got)


def test_hires_time_base() -> None:
    # integer steps count from the start of the first pass; fractions above 1 reach into the hires pass
    assert schedule("a [b:c:15] d", 10, 20) == [[5, "a b d"], [20, "a c d"]]
    assert schedule("a [b:c:1.25] d", 10, 20) == [[5, "a b d"], [20, "a c d"]]
    assert schedule("a [b:c:0.5] d", 10, 20) == [[20, "a c d"]]
    # old timelines: fractions of the base steps, and no hires time base
    assert schedule("a [b:c:0.5] d", 10, 20, old=True) == [[5, "a b d"], [10, "a c d"]]
    assert schedule("a [b:c:3.0] d", 10, None, old=True) == [[3, "a b d"], [10, "a c d"]]
    assert schedule("a [b:c:3.0] d", 10) == [[10, "a b d"]]  # 3.0 is a fraction: step 30, clamped


def test_duplicate_prompts_share_one_schedule() -> None:
    got = get_learned_conditioning_prompt_schedules(["a [b:2]", "c", "a [b:2]"], 4)
    assert got == [[[2, "a "], [4, "a b"]], [[4, "c"]], [[2, "a "], [4, "a b"]]]


# ---------------------------------------------------------------------------------------------------------------
# Bad input: A1111's fallbacks, no exceptions, fast
# ---------------------------------------------------------------------------------------------------------------


def timed(fn, *args):
    # Process CPU time, not wall time: the bound is about the algorithm, not about a busy CI machine.
    start = time.process_time()
    result = fn(*args)
    elapsed = time.process_time() - start
    assert elapsed < 1.0, f"{fn.__name__} took {elapsed:.2f}s of CPU"
    return result


def sequential_product(factors: list[float]) -> float:
    weight = 1.0
    for factor in factors:
        weight *= factor
    return weight


def test_unbalanced_brackets_are_literal() -> None:
    for text in ["a (b [c", "a [b:c", "[a|b", "a]b)c", "a [b:c:2", "(a [b|c)]"]:
        assert schedule(text, 10) == [[10, text]]
    # an unbalanced bracket is text, and what follows it is still read
    assert schedule("[[a:b:2]", 10) == [[2, "[a"], [10, "[b"]]
    assert schedule("a [b:2]]", 10) in ([[2, "a ]"], [10, "a b]"]], [[10, "a [b:2]]"]])
    assert parse_prompt_attention("a (b [c") == [["a ", 1.0], ["b ", 1.1], ["c", 1.1 * (1 / 1.1)]]
    assert parse_prompt_attention("a]b)c") == [["a]b)c", 1.0]]


def test_weight_that_is_not_a_number() -> None:
    assert schedule("(x:abc) [y:2]", 10) == [[2, "(x:abc) "], [10, "(x:abc) y"]]
    assert parse_prompt_attention("(x:abc)") == [["x:abc", 1.1]]
    assert parse_prompt_attention("x:1.2.3)") == [["x:1.2.3)", 1.0]]  # no open bracket: text, as A1111
    with pytest.raises(ValueError, match="1.2.3"):
        parse_prompt_attention("(x:1.2.3)")


def test_too_many_colons_are_literal() -> None:
    assert schedule("[a:b:c:d]", 10) == [[10, "[a:b:c:d]"]]
    assert schedule("[a:b:c:3]", 10) == [[10, "[a:b:c:3]"]]
    assert schedule("[a:b:c:3] [d:2]", 10) == [[2, "[a:b:c:3] "], [10, "[a:b:c:3] d"]]
    assert parse_prompt_attention("[a:b:c:d]") == [["a:b:c:d", 1 / 1.1]]


def test_unreadable_backslash_and_pipe_make_prompt_literal() -> None:
    for text in ["a \\", "a \\\nb [c:2]", "a | b [c:2]", "(a|b) [c:2]", "[a:b|c:2]"]:
        assert schedule(text, 10) == [[10, text]]


def test_huge_step_numbers_do_not_raise() -> None:
    # A1111 raises OverflowError for exponents beyond the float range; +inf never switches, -inf always has
    assert schedule("[a:b:1e999]", 10) == [[10, "a"]]
    assert schedule("[a:b:-1e999]", 10) == [[10, "b"]]
    assert schedule("[a:b:1.5e999]", 10, 20) == [[20, "a"]]
    assert schedule("[a:b:99999999999999999999]", 10) == [[10, "a"]]


@pytest.mark.parametrize("depth", [1000, 3000])
def test_deep_nesting(depth: int) -> None:
    text = "(" * depth + "a"
    assert timed(schedule, text, 20) == [[20, text]]
    assert timed(parse_prompt_attention, text) == [["a", sequential_product([1.1] * depth)]]
    text = "(" * depth + "a" + ")" * depth
    assert timed(schedule, text, 20) == [[20, text]]
    assert timed(parse_prompt_attention, text) == [["a", sequential_product([1.1] * depth)]]
    text = "(a" * depth + ")" * depth
    weights = [w for _, w in timed(parse_prompt_attention, text)]
    assert weights[:3] == [1.1**1, sequential_product([1.1] * 2), sequential_product([1.1] * 3)]
    text = "[" * depth + "a"
    assert timed(schedule, text, 20) == [[20, text]]
    assert timed(parse_prompt_attention, text) == [["a", sequential_product([1 / 1.1] * depth)]]
    text = "[" * depth + "a" + "]" * depth
    assert timed(schedule, text, 20) == [[20, text]]
    text = "[a:" * depth + "b"
    assert timed(schedule, text, 20) == [[20, text]]
    text = "[a:" * depth + "b" + ":1]" * depth
    assert timed(schedule, text, 20) == [[1, "a"], [20, "b"]]
    text = "[a:" * depth + "b" + ":0.5]" * depth
    assert timed(schedule, text, 20) == [[10, "a"], [20, "b"]]
    text = "[a|" * depth + "b" + "]" * depth
    assert timed(schedule, text, 4) == [[1, "a"], [2, "b"], [3, "a"], [4, "b"]]
    text = "x AND " * depth
    res_indexes, flat, _ = timed(get_multicond_prompt_list, [text])
    assert list(flat) == ["x", " x", ""] and len(res_indexes[0]) == depth + 1


LONG_PROMPTS = {
    # name: (prompt, the text of its emphasis segments joined, or None to skip that check)
    "text": ("a photo of a cat, masterpiece, " * 3300, "a photo of a cat, masterpiece, " * 3300),
    "open round": ("(" * 100_000, ""),
    "open square": ("[" * 100_000, ""),
    "closers": (")]" * 50_000, ")]" * 50_000),
    "colons": (":" * 100_000, ":" * 100_000),
    "open round with text": ("(a" * 50_000, "a" * 50_000),
    "open schedules": ("[a:" * 33_334, "a:" * 33_334),
    "whitespace": ("a" + " " * 100_000 + "b :1", "a" + " " * 100_000 + "b :1"),
    "syntax": ("(masterpiece:1.2), [a:b:0.5] [x|y] BREAK ((best)) quality AND [c::3] " * 1450, None),
}


@pytest.mark.parametrize("name", LONG_PROMPTS)
def test_long_prompts(name: str) -> None:
    text, joined = LONG_PROMPTS[name]
    assert len(text) >= 99_000
    got = timed(schedule, text, 30)
    if joined is not None:
        assert got == [[30, text]]
    else:
        assert [end for end, _ in got] == list(range(1, 31))
        assert got[0][1].startswith("(masterpiece:1.2), a x BREAK ((best)) quality AND c (masterpiece:1.2), a x")
        assert got[-1][1].startswith("(masterpiece:1.2), b y BREAK ((best)) quality AND  (masterpiece:1.2), b y")
    segments = timed(parse_prompt_attention, text)
    if joined is not None:
        assert "".join(t for t, _ in segments) == joined
    timed(get_multicond_prompt_list, [text])


ATTENTION_WEIGHT = re.compile(r":\s*([+-]?[.\d]+)\s*\)")


def is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_random_strings_never_raise() -> None:
    rng = random.Random(2024)
    alphabet = list("()[]:|\\ ") + list("abcxyz") + list("0123456789") + [".", "AND", "BREAK"]
    start = time.perf_counter()
    errors = 0
    for _ in range(100_000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 24)))
        ends = [end for end, _ in get_learned_conditioning_prompt_schedules([text], 20)[0]]
        assert ends[-1] == 20 and ends == sorted(set(ends))
        try:
            parse_prompt_attention(text)
        except ValueError:
            # only A1111's own error: a weight inside brackets that is not a number, like (a:1.2.3)
            assert any(not is_float(m.group(1)) for m in ATTENTION_WEIGHT.finditer(text)), text
            errors += 1
        get_multicond_prompt_list([text])
    assert 0 < errors < 1000
    assert time.perf_counter() - start < 60


# ---------------------------------------------------------------------------------------------------------------
# Emphasis details
# ---------------------------------------------------------------------------------------------------------------


def test_attention_products_in_order() -> None:
    assert parse_prompt_attention("((x))") == [["x", 1.0 * 1.1 * 1.1]]
    assert parse_prompt_attention("[(x:1.3)]") == [["x", 1.0 * 1.3 * (1 / 1.1)]]
    assert parse_prompt_attention("(a [b] c)") == [["a ", 1.1], ["b", 1.0 * (1 / 1.1) * 1.1], [" c", 1.1]]
    # unclosed: rounds first (in push order), then squares
    assert parse_prompt_attention("[a (b") == [["a ", 1 / 1.1], ["b", 1.0 * 1.1 * (1 / 1.1)]]
    assert parse_prompt_attention("(x: -0.5 )") == [["x", -0.5]]


def test_attention_escapes_and_break() -> None:
    assert parse_prompt_attention(r"\(a\) \\ \x") == [["(a) \\ x", 1.0]]
    assert parse_prompt_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
    assert parse_prompt_attention("BREAK a") == [["", 1.0], ["BREAK", -1], ["a", 1.0]]
    assert parse_prompt_attention("(a BREAK b)") == [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]
    assert parse_prompt_attention("aBREAKb break") == [["aBREAKb break", 1.0]]
    assert type(parse_prompt_attention("a BREAK b")[1][1]) is int
    assert parse_prompt_attention("") == [["", 1.0]]
    assert parse_prompt_attention("()") == [["", 1.0]]


def test_attention_extreme_weights() -> None:
    big = "9" * 400  # float('999...') is inf
    assert parse_prompt_attention(f"(a:{big})") == [["a", float("inf")]]
    got = parse_prompt_attention(f"((a:0)(b:0):{big})")
    assert len(got) == 2 and all(w != w for _, w in got)  # inf * 0: NaN segments never merge, as in A1111


# ---------------------------------------------------------------------------------------------------------------
# AND weights
# ---------------------------------------------------------------------------------------------------------------


def test_subprompt_weight_split_agrees_with_a1111_pattern() -> None:
    rng = random.Random(11)
    pieces = [" ", "\t", "\n", "\u3000", ":", "a", "1", ".", "+", "-", "5", "\u0663", "x", ": ", ":1", " :0.5", "1.2.3"]
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 10)))
        match = re_weight.search(text)
        expected = (match.group(1), float(match.group(2)) if match.group(2) is not None else 1.0)
        res_indexes, flat, _ = get_multicond_prompt_list([text])
        assert (flat[0], res_indexes[0][0][1]) == expected, repr(text)


def test_multicond_attributes_carry_over() -> None:
    prompts = prompt_parser.SdConditioning(["a AND b"], is_negative_prompt=True, width=832, height=1216)
    _, flat, _ = get_multicond_prompt_list(prompts)
    assert list(flat) == ["a", " b"]
    assert (flat.is_negative_prompt, flat.width, flat.height) == (True, 832, 1216)


# ---------------------------------------------------------------------------------------------------------------
# Comments
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a cat\n# not this\nin a hat", "a cat\nin a hat"),
        ("# first line\na cat", "\na cat"),
        ("a cat # trailing", "a cat \n"),
        ("a # one\nb # two", "a \nb \n"),
        ("a\n#c1\n#c2\nb", "a\n\nb"),
        ("#only", "\n"),
        ("no comment (x:1.2)", "no comment (x:1.2)"),
        ("", ""),
    ],
)
def test_strip_comments(text: str, expected: str) -> None:
    assert strip_comments(text) == expected
