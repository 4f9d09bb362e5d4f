"""A1111's prompt language: prompt editing and alternation timelines, emphasis weights, `AND` composition, and the
scheduled conditioning structures built from them.

A prompt like "a [mountain:lake:0.25] at [dawn|dusk]" becomes, per sampling step, one plain text to encode
(`get_learned_conditioning_prompt_schedules`); each text becomes `[text, weight]` segments for the text encoder
(`parse_prompt_attention`); `AND` splits a prompt into weighted sub-prompts (`get_multicond_prompt_list`).
Function names, signatures and return shapes are A1111's, because extensions call them.

The schedule parser is hand-written and linear in the prompt length (no recursion, so any nesting depth is fine).
It accepts exactly the language of A1111's grammar (written out in the parity data's README, section 1):

* Outside brackets, `[ ] ( ) :` may stand alone ("stray") and are kept as text; `|` may not.
* Inside a bracket construct every bracket must be balanced: `(p)`, `(p:p)`, `[p]` (emphasis, kept verbatim),
  `[a:b:N]` / `[b:N]` / `[a::N]` (scheduling; N a number, optionally surrounded by whitespace) and
  `[a|b|...]` (alternation; options may be empty).
* A backslash escapes the next character (not a newline); a backslash that escapes nothing makes the prompt
  unreadable. Unreadable prompts are used literally for all steps.

Where a prompt can be read in several ways (a stray `]` after a valid construct, say) A1111's parser picks one
depending on Python's string-hash seed; we always read every valid bracket construct as one, which is one of
A1111's readings (checked on thousands of random prompts against A1111's parser under 16 hash seeds).
"""

from __future__ import annotations

import bisect
import logging
import math
import re
from collections import namedtuple
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from modules.errors import UserError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------
# Prompt editing and alternation
# --------------------------------------------------------------------------------------------------------------

# Tokens: a run of ordinary characters, an escape pair, one structural character, or a backslash that escapes
# nothing (end of text or a newline), which makes the prompt unreadable.
_SCHEDULE_TOKEN = re.compile(r"[^\\\[\]():|]+|\\[^\n]|[\[\]():|]|\\")
_STRUCTURE = frozenset("[]():|")
# The step part of `[a:b:N]`: whitespace, then a signed integer or decimal with an optional exponent (ASCII digits).
_WHEN = re.compile(r"\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*")

_EMPHASIS, _SCHEDULED, _ALTERNATE = 0, 1, 2


class _Scheduled:
    """`[before:after:when]`: `before` up to and including step `when`, `after` from then on."""

    __slots__ = ("before", "after", "number", "when")

    def __init__(self, before: list, after: list, number: str) -> None:
        self.before = before
        self.after = after
        self.number = number
        self.when = 0

    def branch(self, step: int) -> list:
        return self.before if step <= self.when else self.after


class _Alternate:
    """`[o1|o2|...]`: option (step - 1) mod k."""

    __slots__ = ("options",)

    def __init__(self, options: list[list]) -> None:
        self.options = options

    def branch(self, step: int) -> list:
        return self.options[(step - 1) % len(self.options)]


class _Frame:
    """An open scheduling or alternation construct while its contents are collected."""

    __slots__ = ("kind", "segments", "parent", "number")

    def __init__(self, kind: int, parent: list, number: str) -> None:
        self.kind = kind
        self.segments: list[list] = [[]]
        self.parent = parent
        self.number = number


def _compact(items: list) -> list:
    """Join neighbouring text pieces so that rendering touches few items."""
    out: list = []
    text: list[str] = []
    for item in items:
        if item.__class__ is str:
            text.append(item)
        else:
            if text:
                out.append("".join(text))
                text = []
            out.append(item)
    if text:
        out.append("".join(text))
    return out


def _find_constructs(prompt: str, tokens: list[str], starts: list[int]) -> dict[int, tuple[int, str]] | None:
    """Valid `[...]` constructs as {open token index: (kind, step number text)}.

    None when the prompt is unreadable. A construct starting at a bracket can only end where the brackets opened
    since then first balance out, so one left-to-right pass with a stack decides every bracket: a closing bracket
    of the wrong type spoils all brackets still open (inside a construct nothing may stand alone).
    """
    constructs: dict[int, tuple[int, str]] = {}
    # frame: [open token index, bracket, colons, pipes, position of the last colon, all inner constructs valid]
    frames: list[list] = []
    for i, tok in enumerate(tokens):
        if tok not in _STRUCTURE:
            if tok == "\\":
                return None
            continue
        if tok == "[" or tok == "(":
            frames.append([i, tok, 0, 0, -1, True])
        elif tok == ":":
            if frames:
                frames[-1][2] += 1
                frames[-1][4] = starts[i]
        elif tok == "|":
            if not frames:
                return None  # `|` outside brackets cannot be read
            frames[-1][3] += 1
        elif frames:
            frame = frames[-1]
            if (tok == "]") != (frame[1] == "["):
                if any(f[3] for f in frames):
                    return None  # a `|` can only be read inside a valid alternation
                frames.clear()
                continue
            frames.pop()
            _, bracket, colons, pipes, last_colon, valid = frame
            kind, number = _EMPHASIS, ""
            if bracket == "(":
                valid = valid and pipes == 0 and colons <= 1
            elif colons == 0:
                kind = _ALTERNATE if pipes else _EMPHASIS
            elif pipes == 0 and colons <= 2 and valid:
                match = _WHEN.fullmatch(prompt, last_colon + 1, starts[i])
                valid = match is not None
                kind, number = _SCHEDULED, match.group(1) if match else ""
            else:
                valid = False
            if not valid and pipes:
                return None
            if valid and bracket == "[":
                constructs[frame[0]] = (kind, number)
            if frames and not valid:
                frames[-1][5] = False
    if any(f[3] for f in frames):
        return None
    return constructs


def _parse_schedule(prompt: str) -> tuple[list, list[_Scheduled], bool] | None:
    """(items, all scheduling nodes, whether there is an alternation), or None if the prompt is unreadable.

    Items are text pieces and nodes; a node's branches are item lists again.
    """
    tokens: list[str] = []
    starts: list[int] = []
    for m in _SCHEDULE_TOKEN.finditer(prompt):
        tokens.append(m.group())
        starts.append(m.start())
    constructs = _find_constructs(prompt, tokens, starts)
    if constructs is None:
        return None

    items: list = []
    nodes: list[_Scheduled] = []
    has_alternate = False
    # None marks a bracket that is kept verbatim (emphasis); its contents go to the enclosing list.
    stack: list[_Frame | None] = []
    cur = items
    for i, tok in enumerate(tokens):
        if tok not in _STRUCTURE or (not stack and (tok != "[" or i not in constructs)):
            cur.append(tok)
        elif tok == "(":
            stack.append(None)
            cur.append(tok)
        elif tok == "[":
            kind, number = constructs[i]
            if kind == _EMPHASIS:
                stack.append(None)
                cur.append(tok)
            else:
                frame = _Frame(kind, cur, number)
                stack.append(frame)
                cur = frame.segments[0]
        elif tok == ":" or tok == "|":
            frame = stack[-1]
            if frame is None:
                cur.append(tok)
            else:
                cur = []
                frame.segments.append(cur)
        else:
            frame = stack.pop()
            if frame is None:
                cur.append(tok)
                continue
            cur = frame.parent
            segments = [_compact(s) for s in frame.segments]
            if frame.kind == _ALTERNATE:
                has_alternate = True
                cur.append(_Alternate(segments))
            else:
                # the last segment is the step number
                before, after = (segments[0], segments[1]) if len(segments) == 3 else ([], segments[0])
                node = _Scheduled(before, after, frame.number)
                nodes.append(node)
                cur.append(node)
    return _compact(items), nodes, has_alternate


def _render(items: list, step: int) -> str:
    out: list[str] = []
    pending = [iter(items)]
    while pending:
        for item in pending[-1]:
            if item.__class__ is str:
                out.append(item)
            else:
                pending.append(iter(item.branch(step)))
                break
        else:
            pending.pop()
    return "".join(out)


def _switch_step(number: str, steps: int, int_offset: int, frac_offset: float, use_old_scheduling: bool) -> int:
    """The last step of `before` for a `[before:after:number]`, as A1111 computes it."""
    v = float(number)
    if use_old_scheduling:
        v = v * steps if v < 1 else v
    elif "." in number:
        v = (v - frac_offset) * steps
    else:
        v = v - int_offset
    if math.isfinite(v):
        return min(steps, int(v))
    # An exponent beyond the float range (A1111 raises OverflowError here): +inf never switches, -inf always has.
    return steps if not v < 0 else min(steps, 0) - 1


def get_learned_conditioning_prompt_schedules(
    prompts: Sequence[str], base_steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[list[list]]:
    """For each prompt, `[[end_step, text], ...]`: `text` is used for steps up to `end_step`, ascending.

    With `hires_steps` (the second pass of hires fix) the time base is the hires pass: integer steps count from
    the start of the first pass and fractions above 1 reach into the hires pass (`1.5` is its middle), unless
    `use_old_scheduling` ("Use old prompt editing timelines"), where fractions are below 1 and the first
    pass's steps are the time base.

    >>> g = lambda p: get_learned_conditioning_prompt_schedules([p], 10)[0]
    >>> g("a [b:c:3] d")
    [[3, 'a b d'], [10, 'a c d']]
    >>> g("[cat|dog] [x:.5]")[:2]
    [[1, 'cat '], [2, 'dog ']]
    """
    if hires_steps is None or use_old_scheduling:
        steps, int_offset, frac_offset = base_steps, 0, 0.0
    else:
        steps, int_offset, frac_offset = hires_steps, base_steps, 1.0

    def schedule(prompt: str) -> list[list]:
        parsed = _parse_schedule(prompt)
        if parsed is None:
            log.debug("prompt editing syntax not readable, used literally: %r", prompt)
            return [[steps, prompt]]
        items, nodes, has_alternate = parsed
        boundaries = {steps}
        for node in nodes:
            node.when = _switch_step(node.number, steps, int_offset, frac_offset, use_old_scheduling)
            if node.when >= 1:
                boundaries.add(node.when)
        if has_alternate:
            boundaries.update(range(1, steps + 1))
        return [[t, _render(items, t)] for t in sorted(boundaries)]

    by_prompt = {prompt: schedule(prompt) for prompt in dict.fromkeys(prompts)}
    return [by_prompt[prompt] for prompt in prompts]


# --------------------------------------------------------------------------------------------------------------
# Emphasis
# --------------------------------------------------------------------------------------------------------------

# Tried in this order at each position: escaped bracket or backslash, any other backslash (dropped), openers,
# weighted close `:1.3)`, closers, a run of text, a lone colon.
_ATTENTION_TOKEN = re.compile(r"\\[()\[\]\\]|\\|[(\[]|:\s*([+-]?[.\d]+)\s*\)|[)\]]|[^\\()\[\]:]+|:")
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_ROUND_MULTIPLIER = 1.1
_SQUARE_MULTIPLIER = 1 / 1.1


def _same_weight(a: float, b: float) -> bool:
    """Bit-identical weights (0.0 and -0.0 differ, NaN never matches): such segments share all future products."""
    return a == b and (a != 0 or math.copysign(1.0, a) == math.copysign(1.0, b))


class _WeightRuns:
    """The weights of the segments found so far, kept as runs of neighbouring segments with bit-identical weights.

    A bracket multiplies every segment from its position on; with runs that costs one multiplication per run,
    done by numpy over the whole tail at once, so even thousands of nested brackets stay fast. The products are
    taken in A1111's order, one factor at a time, so every weight is exactly A1111's float. Callers silence
    numpy's overflow warnings: inf and NaN weights are what A1111 computes for absurd weights too.
    """

    def __init__(self) -> None:
        self.segment_count = 0
        self.starts: list[int] = []
        self.weights = np.empty(16)
        self.last = math.nan  # weight of the last run, as a Python float (NaN: no run yet)
        # Runs that hold BREAK markers never inside a bracket: A1111 leaves their weight the int -1.
        self.untouched_markers: set[int] = set()

    def _reserve(self, runs: int) -> None:
        if runs > len(self.weights):
            self.weights = np.concatenate([self.weights, np.empty(len(self.weights))])

    def add(self, weight: float, untouched_marker: bool = False) -> None:
        if not _same_weight(self.last, weight):
            runs = len(self.starts)
            self._reserve(runs + 1)
            self.weights[runs] = weight
            self.starts.append(self.segment_count)
            self.last = weight
            if untouched_marker:
                self.untouched_markers.add(runs)
        self.segment_count += 1

    def multiply_from(self, position: int, multiplier: float) -> None:
        if position >= self.segment_count:
            return
        runs = len(self.starts)
        run = bisect.bisect_right(self.starts, position) - 1
        if self.starts[run] != position:
            # split the run at `position`
            run += 1
            self.starts.insert(run, position)
            self._reserve(runs + 1)
            self.weights[run + 1 : runs + 1] = self.weights[run:runs]
            self.weights[run] = self.weights[run - 1]
            runs += 1
        self.weights[run:runs] *= multiplier
        self.last = float(self.weights[runs - 1])

    def runs(self) -> list[tuple[int, int, float]]:
        """(first segment, end segment, weight) per run."""
        ends = self.starts[1:] + [self.segment_count]
        weights = self.weights[: len(self.starts)].tolist()
        return [
            (start, end, -1 if i in self.untouched_markers else weight)
            for i, (start, end, weight) in enumerate(zip(self.starts, ends, weights, strict=True))
        ]


class PromptWeightError(UserError, ValueError):
    """An emphasis weight that is not a number, e.g. ``(a:1.2.3)`` (a ValueError, as in A1111)."""


def _emphasis_weight(number: str) -> float:
    try:
        return float(number)
    except ValueError:
        # A1111 raises ValueError here too; keep the type, say what is wrong (a UserError: a 400, not a 500)
        raise PromptWeightError(f"prompt weight {number!r} is not a number: write weights like (word:1.2)") from None


def parse_prompt_attention(text: str) -> list[list]:
    """Split `text` into `[segment, weight]` pairs: `(x)` ×1.1, `[x]` ÷1.1, `(x:w)` ×w, nested brackets multiply.

    Escapes `\\( \\) \\[ \\] \\\\` give the literal character, any other backslash is dropped, unbalanced openers
    apply to the rest of the text and stray closers are text. `BREAK` gives a `["BREAK", -1]` marker.
    Neighbouring segments of equal weight are merged. A weight like `1.2.3` raises ValueError (as A1111).

    >>> parse_prompt_attention("a ((b)) [c] (d:1.5)")
    [['a ', 1.0], ['b', 1.2100000000000002], [' ', 1.0], ['c', 0.9090909090909091], [' ', 1.0], ['d', 1.5]]
    """
    segments: list[str] = []
    weights = _WeightRuns()
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    with np.errstate(over="ignore", invalid="ignore"):
        for m in _ATTENTION_TOKEN.finditer(text):
            token = m.group(0)
            number = m.group(1)
            if token[0] == "\\":
                segments.append(token[1:])
                weights.add(1.0)
            elif token == "(":
                round_brackets.append(len(segments))
            elif token == "[":
                square_brackets.append(len(segments))
            elif number is not None and round_brackets:
                weights.multiply_from(round_brackets.pop(), _emphasis_weight(number))
            elif token == ")" and round_brackets:
                weights.multiply_from(round_brackets.pop(), _ROUND_MULTIPLIER)
            elif token == "]" and square_brackets:
                weights.multiply_from(square_brackets.pop(), _SQUARE_MULTIPLIER)
            else:
                parts = _BREAK.split(token) if "BREAK" in token else [token]
                for i, part in enumerate(parts):
                    if i > 0:
                        segments.append("BREAK")
                        weights.add(-1, untouched_marker=not round_brackets and not square_brackets)
                    segments.append(part)
                    weights.add(1.0)

        for position in round_brackets:
            weights.multiply_from(position, _ROUND_MULTIPLIER)
        for position in square_brackets:
            weights.multiply_from(position, _SQUARE_MULTIPLIER)

    if not segments:
        return [["", 1.0]]

    # Merge neighbours whose weights compare equal; the merged entry keeps its first weight (A1111's rule).
    res: list[list] = []
    texts: list[str] = []
    current: float = 0.0
    for start, end, weight in weights.runs():
        if texts and weight == current:
            texts.extend(segments[start:end])
            continue
        if texts:
            res.append(["".join(texts), current])
        if weight != weight:  # NaN (an infinite weight times 0) equals nothing, so nothing merges with it
            res.extend([segment, weight] for segment in segments[start:end])
            texts = []
            continue
        texts = segments[start:end]
        current = weight
    if texts:
        res.append(["".join(texts), current])
    return res


# --------------------------------------------------------------------------------------------------------------
# AND composition
# --------------------------------------------------------------------------------------------------------------

re_AND = re.compile(r"\bAND\b")
# A1111's pattern for one sub-prompt: its text and an optional final `:weight`. Kept for extensions that use it;
# `_split_weight` computes the same result in linear time (the pattern backtracks over long whitespace runs).
re_weight = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
_WEIGHT_NUMBER = re.compile(r"\d+\.?|\d*\.\d+")


def _split_weight(subprompt: str) -> tuple[str, float]:
    """`re_weight`'s reading: (text without trailing whitespace or weight, weight or 1.0)."""
    body = subprompt.rstrip()  # str.rstrip() removes exactly the characters `\s` matches
    end = start = len(body)
    while start > 0 and (body[start - 1] == "." or body[start - 1].isdecimal()):
        start -= 1
    if start == end or not _WEIGHT_NUMBER.fullmatch(body, start, end):
        return body, 1.0
    if start > 0 and body[start - 1] in "+-":
        start -= 1
    colon = start
    while colon > 0 and body[colon - 1].isspace():
        colon -= 1
    if colon == 0 or body[colon - 1] != ":":
        return body, 1.0
    text_end = colon - 1
    while text_end > 0 and body[text_end - 1].isspace():
        text_end -= 1
    return body[:text_end], float(body[start:end])


def get_multicond_prompt_list(prompts: Sequence[str]) -> tuple[list[list[tuple[int, float]]], SdConditioning, dict]:
    """Split each prompt at `AND` into weighted sub-prompts.

    Returns `(res_indexes, prompt_flat_list, prompt_indexes)`: per prompt `[(index, weight), ...]`, the distinct
    sub-prompt texts in first-seen order (an SdConditioning with the attributes of `prompts`), and text → index.
    """
    res_indexes: list[list[tuple[int, float]]] = []
    prompt_indexes: dict[str, int] = {}
    prompt_flat_list = SdConditioning([], copy_from=prompts)
    for prompt in prompts:
        indexes = []
        for subprompt in re_AND.split(prompt):
            text, weight = _split_weight(subprompt)
            index = prompt_indexes.get(text)
            if index is None:
                index = len(prompt_flat_list)
                prompt_flat_list.append(text)
                prompt_indexes[text] = index
            indexes.append((index, weight))
        res_indexes.append(indexes)
    return res_indexes, prompt_flat_list, prompt_indexes


# --------------------------------------------------------------------------------------------------------------
# Comments
# --------------------------------------------------------------------------------------------------------------

_COMMENT_LINE = re.compile(r"(?:^|\n)#[^\n]*(?:\n|$)")
_COMMENT_TAIL = re.compile(r"#[^\n]*(?:\n|$)")


def strip_comments(text: str) -> str:
    """A1111's prompt comments (option `enable_prompt_comments`): lines starting with `#` are removed, and `#...`
    to the end of a line is removed; each removed comment leaves one newline.

    >>> strip_comments("a cat\\n# not this\\nin a hat # nor this")
    'a cat\\nin a hat \\n'
    """
    return _COMMENT_TAIL.sub("\n", _COMMENT_LINE.sub("\n", text))


# --------------------------------------------------------------------------------------------------------------
# Scheduled conditioning
# --------------------------------------------------------------------------------------------------------------

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])
ScheduledPromptConditioning.__doc__ = "`cond` is used for sampling steps up to and including `end_at_step`."


class SdConditioning(list):
    """A list of prompts for the model's conditioner, with what SDXL's conditioner also needs: the image size and
    whether these are negative prompts. Attributes not given are taken from `copy_from` (default: `prompts`)."""

    def __init__(
        self,
        prompts: Iterable[str],
        is_negative_prompt: bool = False,
        width: int | None = None,
        height: int | None = None,
        copy_from: Any = None,
    ) -> None:
        super().__init__(prompts)
        if copy_from is None:
            copy_from = prompts
        self.is_negative_prompt: bool = is_negative_prompt or getattr(copy_from, "is_negative_prompt", False)
        self.width: int | None = width or getattr(copy_from, "width", None)
        self.height: int | None = height or getattr(copy_from, "height", None)

    @property
    def shape(self) -> tuple[int]:
        """The batch size, as `MulticondLearnedConditioning.shape` gives it."""
        return (len(self),)


class ComposableScheduledPromptConditioning:
    """One `AND` sub-prompt: its schedule and its weight."""

    def __init__(self, schedules: list[ScheduledPromptConditioning], weight: float = 1.0) -> None:
        self.schedules: list[ScheduledPromptConditioning] = schedules
        self.weight: float = weight


class MulticondLearnedConditioning:
    """Per image, its `AND` sub-prompts. `shape` is `(batch size,)`, which samplers ask any conditioning for."""

    def __init__(self, shape: tuple, batch: list[list[ComposableScheduledPromptConditioning]]) -> None:
        self.shape: tuple = shape
        self.batch: list[list[ComposableScheduledPromptConditioning]] = batch


class DictWithShape(dict):
    """A dict conditioning (SDXL: `crossattn`, `vector`) whose `shape` is that of its cross-attention tensor."""

    def __init__(self, x: dict, shape: tuple | None = None) -> None:
        super().__init__(x)

    @property
    def shape(self) -> torch.Size:
        return self["crossattn"].shape


def get_learned_conditioning(
    model: Any,
    prompts: Sequence[str],
    steps: int,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
) -> list[list[ScheduledPromptConditioning]]:
    """For each prompt, its schedule with the conditioning of each text.

    `model.get_learned_conditioning(texts)` gets, once per distinct prompt, the texts of its schedule (one per
    entry, repeats included) as an SdConditioning (attributes of `prompts`) and returns a tensor
    `[n, tokens, dim]` or a dict of such batches. The texts of one prompt are encoded together, as in A1111: an
    encoder pads every text of a call to the same number of 77-token chunks, and the "Original" emphasis rescales
    by the mean over the whole call (where repeated texts count again), so splitting, merging or de-duplicating
    calls would change the conditioning. Encoders may encode repeated texts once.
    """
    schedules = get_learned_conditioning_prompt_schedules(prompts, steps, hires_steps, use_old_scheduling)
    cache: dict[str, list[ScheduledPromptConditioning]] = {}
    res = []
    for prompt, schedule in zip(prompts, schedules, strict=True):
        cond_schedule = cache.get(prompt)
        if cond_schedule is None:
            conds = model.get_learned_conditioning(SdConditioning([text for _, text in schedule], copy_from=prompts))
            cond_schedule = []
            for i, (end_at_step, _) in enumerate(schedule):
                cond = {k: v[i] for k, v in conds.items()} if isinstance(conds, dict) else conds[i]
                cond_schedule.append(ScheduledPromptConditioning(end_at_step, cond))
            cache[prompt] = cond_schedule
        res.append(cond_schedule)
    return res


def get_multicond_learned_conditioning(
    model: Any,
    prompts: Sequence[str],
    steps: int,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
) -> MulticondLearnedConditioning:
    """Like `get_learned_conditioning`, for prompts split at `AND`; each distinct sub-prompt is encoded once."""
    res_indexes, prompt_flat_list, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(model, prompt_flat_list, steps, hires_steps, use_old_scheduling)
    batch = [
        [ComposableScheduledPromptConditioning(learned[i], weight) for i, weight in indexes] for indexes in res_indexes
    ]
    return MulticondLearnedConditioning(shape=(len(prompts),), batch=batch)


def _cond_at_step(schedule: list[ScheduledPromptConditioning], current_step: int) -> Any:
    """The first entry whose `end_at_step` is at or after `current_step`; past the end, A1111 takes the first."""
    for entry in schedule:
        if current_step <= entry.end_at_step:
            return entry.cond
    return schedule[0].cond


def stack_conds(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack conditionings that may have different token counts: shorter ones repeat their last token vector."""
    token_count = max(t.shape[0] for t in tensors)
    padded = [
        t if t.shape[0] == token_count else torch.cat([t, t[-1:].expand(token_count - t.shape[0], *t.shape[1:])])
        for t in tensors
    ]
    return torch.stack(padded)


def _stack(conds: list[Any], like: Any) -> torch.Tensor | DictWithShape:
    """Stack per-image conds (tensors or dicts of tensors) on the device and dtype of `like`, key by key."""
    if isinstance(like, dict):
        return DictWithShape(
            {k: stack_conds([c[k] for c in conds]).to(device=v.device, dtype=v.dtype) for k, v in like.items()}
        )
    return stack_conds(conds).to(device=like.device, dtype=like.dtype)


def reconstruct_cond_batch(
    c: list[list[ScheduledPromptConditioning]], current_step: int
) -> torch.Tensor | DictWithShape:
    """The batch of conds for `current_step`, one per schedule; shorter ones are padded with their last token."""
    first = c[0][0].cond
    return _stack([_cond_at_step(schedule, current_step) for schedule in c], first)


def reconstruct_multicond_batch(
    c: MulticondLearnedConditioning, current_step: int
) -> tuple[list[list[tuple[int, float]]], torch.Tensor | DictWithShape]:
    """`(conds_list, stacked)`: all sub-prompt conds for `current_step` stacked in order, and per image
    `[(index into stacked, weight), ...]`."""
    conds = []
    conds_list = []
    for composable_prompts in c.batch:
        conds_for_image = []
        for composable in composable_prompts:
            conds_for_image.append((len(conds), composable.weight))
            conds.append(_cond_at_step(composable.schedules, current_step))
        conds_list.append(conds_for_image)
    return conds_list, _stack(conds, c.batch[0][0].schedules[0].cond)
