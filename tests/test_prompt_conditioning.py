"""Scheduled conditioning structures of modules/prompt_parser.py, with a fake text encoder."""

from __future__ import annotations

import hashlib

import pytest
import torch

from modules.prompt_parser import (
    ComposableScheduledPromptConditioning,
    DictWithShape,
    MulticondLearnedConditioning,
    ScheduledPromptConditioning,
    SdConditioning,
    get_learned_conditioning,
    get_learned_conditioning_prompt_schedules,
    get_multicond_learned_conditioning,
    reconstruct_cond_batch,
    reconstruct_multicond_batch,
    stack_conds,
)

DIM = 4
CHUNK = 3  # tokens per chunk (77 in real encoders)


def encode(text: str) -> torch.Tensor:
    """A deterministic stand-in for a text encoder: one chunk per 10 characters, values from the text's hash."""
    chunks = 1 + len(text) // 10
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return torch.randn(chunks * CHUNK, DIM, generator=torch.Generator().manual_seed(seed))


EMPTY_CHUNK = torch.full((CHUNK, DIM), -7.0)


class FakeModel:
    """Like A1111's encoders, pads every text of one call to the call's largest chunk count with empty chunks."""

    def __init__(self, as_dict: bool = False) -> None:
        self.as_dict = as_dict
        self.calls: list[SdConditioning] = []

    def batch(self, texts: list[str]) -> torch.Tensor:
        encoded = [encode(t) for t in texts]
        tokens = max(e.shape[0] for e in encoded)
        return torch.stack([torch.cat([e, EMPTY_CHUNK.repeat((tokens - e.shape[0]) // CHUNK, 1)]) for e in encoded])

    def get_learned_conditioning(self, texts: SdConditioning) -> torch.Tensor | dict:
        self.calls.append(texts)
        crossattn = self.batch(list(texts))
        if self.as_dict:
            return {"crossattn": crossattn, "vector": crossattn.mean(dim=1)}
        return crossattn


PROMPTS = ["a [red:blue:3] crown", "a plain crown", "a [red:blue:3] crown", "[cat|dog] on a [very long table:mat:0.5]"]


def test_one_call_per_distinct_prompt_with_distinct_texts() -> None:
    model = FakeModel()
    prompts = SdConditioning(PROMPTS, width=640, height=448, is_negative_prompt=True)
    res = get_learned_conditioning(model, prompts, 10)

    table, mat = "on a very long table", "on a mat"
    assert [list(call) for call in model.calls] == [
        ["a red crown", "a blue crown"],
        ["a plain crown"],
        # one text per schedule entry, repeats included (A1111's emphasis mean counts them)
        [f"{'cat' if step % 2 else 'dog'} {table if step <= 5 else mat}" for step in range(1, 11)],
    ]
    for call in model.calls:
        assert isinstance(call, SdConditioning)
        assert (call.width, call.height, call.is_negative_prompt) == (640, 448, True)

    schedules = get_learned_conditioning_prompt_schedules(PROMPTS, 10)
    assert len(res) == len(PROMPTS)
    assert res[2] is res[0]
    for prompt_res, schedule, call in zip(
        res, schedules, [model.calls[0], model.calls[1], model.calls[0], model.calls[2]], strict=True
    ):
        assert [entry.end_at_step for entry in prompt_res] == [end for end, _ in schedule]
        batch = model.batch(list(call))
        for entry, (_, text) in zip(prompt_res, schedule, strict=True):
            assert isinstance(entry, ScheduledPromptConditioning)
            assert torch.equal(entry.cond, batch[list(call).index(text)])


def test_texts_of_one_prompt_share_the_chunk_count() -> None:
    # the short text is padded to the long one's chunk count because they are encoded together, as in A1111
    model = FakeModel()
    (res,) = get_learned_conditioning(model, ["[x:a much longer text than x:2]"], 4)
    assert [entry.cond.shape[0] for entry in res] == [3 * CHUNK, 3 * CHUNK]
    assert torch.equal(res[0].cond[CHUNK:], EMPTY_CHUNK.repeat(2, 1))


def test_dict_conditioning() -> None:
    model = FakeModel(as_dict=True)
    res = get_learned_conditioning(model, ["a [b:c:2]"], 4)
    entry = res[0][1]
    assert set(entry.cond) == {"crossattn", "vector"}
    assert torch.equal(entry.cond["crossattn"], encode("a c"))
    assert torch.equal(entry.cond["vector"], encode("a c").mean(dim=0))


def test_reconstruct_cond_batch_picks_step_and_pads() -> None:
    model = FakeModel()
    c = get_learned_conditioning(model, ["a [b:c:3]", "a text of more than ten characters"], 10)
    long_text = encode("a text of more than ten characters")
    for step, text in [(1, "a b"), (3, "a b"), (4, "a c"), (10, "a c"), (11, "a b")]:
        batch = reconstruct_cond_batch(c, step)
        assert batch.shape == (2, long_text.shape[0], DIM)
        short = encode(text)
        assert torch.equal(batch[0, : short.shape[0]], short)
        # padded by repeating the last token vector
        assert torch.equal(batch[0, short.shape[0] :], short[-1:].expand(long_text.shape[0] - short.shape[0], DIM))
        assert torch.equal(batch[1], long_text)


def test_reconstruct_cond_batch_dtype_and_dict() -> None:
    c = [
        [ScheduledPromptConditioning(5, torch.ones(2, DIM, dtype=torch.float16))],
        [ScheduledPromptConditioning(5, torch.full((3, DIM), 2.0))],
    ]
    batch = reconstruct_cond_batch(c, 1)
    assert batch.dtype == torch.float16 and batch.shape == (2, 3, DIM)
    assert batch[0, 2].tolist() == [1.0] * DIM

    model = FakeModel(as_dict=True)
    c = get_learned_conditioning(model, ["x", "a text of more than ten characters"], 4)
    batch = reconstruct_cond_batch(c, 1)
    assert isinstance(batch, DictWithShape)
    assert batch.shape == batch["crossattn"].shape == (2, 4 * CHUNK, DIM)
    assert batch["vector"].shape == (2, DIM)
    assert torch.equal(batch["vector"][0], encode("x").mean(dim=0))


def test_multicond() -> None:
    model = FakeModel()
    prompts = ["a cat AND a [red:blue:2] dog :0.5", "a cat", "a cat :1.5 AND a cat"]
    c = get_multicond_learned_conditioning(model, prompts, 4)
    assert isinstance(c, MulticondLearnedConditioning)
    assert c.shape == (3,)
    # distinct sub-prompts, each encoded once
    assert [list(call) for call in model.calls] == [["a cat"], [" a red dog", " a blue dog"], [" a cat"]]
    assert [[(type(x).__name__, x.weight) for x in image] for image in c.batch] == [
        [("ComposableScheduledPromptConditioning", 1.0), ("ComposableScheduledPromptConditioning", 0.5)],
        [("ComposableScheduledPromptConditioning", 1.0)],
        [("ComposableScheduledPromptConditioning", 1.5), ("ComposableScheduledPromptConditioning", 1.0)],
    ]
    assert c.batch[1][0].schedules is c.batch[0][0].schedules

    conds_list, stacked = reconstruct_multicond_batch(c, 3)
    assert conds_list == [[(0, 1.0), (1, 0.5)], [(2, 1.0)], [(3, 1.5), (4, 1.0)]]
    expected = stack_conds([encode(t) for t in ["a cat", " a blue dog", "a cat", "a cat", " a cat"]])
    assert torch.equal(stacked, expected)
    assert torch.equal(reconstruct_multicond_batch(c, 1)[1][1, : encode(" a red dog").shape[0]], encode(" a red dog"))


def test_multicond_dict() -> None:
    model = FakeModel(as_dict=True)
    c = get_multicond_learned_conditioning(model, ["short AND a much longer sub-prompt"], 4)
    conds_list, stacked = reconstruct_multicond_batch(c, 1)
    assert conds_list == [[(0, 1.0), (1, 1.0)]]
    assert isinstance(stacked, DictWithShape)
    assert stacked.shape == (2, 3 * CHUNK, DIM)
    short = encode("short")
    assert torch.equal(stacked["crossattn"][0, CHUNK:], short[-1:].expand(2 * CHUNK, DIM))
    assert stacked["vector"].shape == (2, DIM)


def test_stack_conds() -> None:
    a = torch.arange(6.0).reshape(3, 2)
    b = torch.arange(10.0).reshape(5, 2)
    stacked = stack_conds([a, b])
    assert stacked.shape == (2, 5, 2)
    assert stacked[0].tolist() == [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]]
    assert torch.equal(stacked[1], b)


def test_structures() -> None:
    prompts = SdConditioning(["a", "b"], width=512, height=768)
    assert prompts == ["a", "b"] and prompts.shape == (2,)
    assert (prompts.width, prompts.height, prompts.is_negative_prompt) == (512, 768, False)
    copy = SdConditioning(["c"], copy_from=prompts)
    assert (copy.width, copy.height, copy.is_negative_prompt) == (512, 768, False)
    override = SdConditioning(["c"], is_negative_prompt=True, width=64, copy_from=prompts)
    assert (override.width, override.height, override.is_negative_prompt) == (64, 768, True)
    plain = SdConditioning(["d"])
    assert (plain.width, plain.height, plain.is_negative_prompt) == (None, None, False)

    entry = ScheduledPromptConditioning(end_at_step=3, cond="x")
    assert entry == (3, "x") and entry.end_at_step == 3 and entry.cond == "x"
    assert ComposableScheduledPromptConditioning([entry]).weight == 1.0
    d = DictWithShape({"crossattn": torch.zeros(2, 5, 3), "vector": torch.zeros(2, 7)}, (2, 5, 3))
    assert d.shape == (2, 5, 3) and set(d) == {"crossattn", "vector"}


@pytest.mark.parametrize("use_old_scheduling", [False, True])
def test_hires_arguments_are_passed_on(use_old_scheduling: bool) -> None:
    model = FakeModel()
    (res,) = get_learned_conditioning(model, ["[a:b:15]"], 10, 20, use_old_scheduling)
    # old timelines keep the first pass's 10 steps as the time base; otherwise step 15 is step 5 of the hires pass
    expected = [[10, "a"]] if use_old_scheduling else [[5, "a"], [20, "b"]]
    assert [(e.end_at_step, e.cond.shape) for e in res] == [(end, encode(t).shape) for end, t in expected]
