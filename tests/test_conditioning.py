"""Text conditioning on the real tiny encoders: chunks, comma backtrack, BREAK, emphasis math, clip skip, SDXL conds,
token counter, bad input. Expected values are computed independently by running the transformers models directly."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from modules import conditioning, devices, prompt_parser, sd_models, shared, token_counter
from modules.conditioning import BOS_ID, EOS_ID, tokenize_line
from modules.errors import UserError
from modules.prompt_parser import SdConditioning

A, B, COMMA = 320, 321, 267  # "a", "b", ","


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    shared.opts.sd_checkpoints_limit = 3
    loaded = {
        key: sd_models.load_model(sd_models.find_checkpoint(tiny_checkpoints[key].name))
        for key in ("sd2v", "sdxl", "sd1")
    }
    yield loaded
    shared.opts.sd_checkpoints_limit = 1
    sd_models.unload_model_weights()


@pytest.fixture
def opts(monkeypatch):
    """Set settings for one test; monkeypatch restores them."""

    def set_opts(**values):
        for key, value in values.items():
            monkeypatch.setitem(shared.opts.data, key, value)

    return set_opts


def hf_encode(encoder, ids: list[list[int]], layer: int | None = None, norm: bool = False):
    """The transformers model run directly: last_hidden_state, or hidden_states[layer] (optionally final-normed)."""
    model = encoder.transformer
    out = model(input_ids=torch.tensor(ids), output_hidden_states=True)
    if layer is None:
        return out.last_hidden_state, getattr(out, "text_embeds", None)
    z = out.hidden_states[layer]
    return (model.text_model if hasattr(model, "text_model") else model).final_layer_norm(z) if norm else z, None


def chunk(body: list[int], pad: int = EOS_ID) -> list[int]:
    """BOS + body + EOS, then padding to 77 (OpenCLIP's pad goes after the first EOS)."""
    return [BOS_ID] + body + [EOS_ID] + [pad] * (75 - len(body))


# -- chunks ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,chunks,count,limit",
    [(0, 1, 0, 75), (1, 1, 1, 75), (75, 1, 75, 75), (76, 2, 76, 150), (150, 2, 150, 150), (151, 3, 151, 225)],
)
def test_chunk_boundaries(n, chunks, count, limit):
    result, token_count = tokenize_line("a " * n)
    assert (len(result), token_count, conditioning.target_token_count(token_count)) == (chunks, count, limit)
    body = [t for c in result for t in c.tokens[1:-1] if t != EOS_ID]
    assert body == [A] * n
    for c in result:
        assert len(c.tokens) == len(c.multipliers) == 77
        assert c.tokens[0] == BOS_ID and c.tokens[-1] == EOS_ID


@pytest.mark.parametrize("n", [75, 76, 150])
def test_chunks_are_encoded_separately_and_concatenated(models, n):
    model = models["sd1"]
    encoder = model.cond_stage_model.encoders[0]
    with torch.no_grad():
        z = model.get_learned_conditioning(["a " * n])
        rest = n - 75
        expected = [chunk([A] * min(n, 75))] + ([chunk([A] * rest)] if rest > 0 else [])
        direct = torch.cat([hf_encode(encoder, [ids])[0] for ids in expected], dim=1)
    assert z.shape == (1, 77 * len(expected), 64)
    assert torch.equal(z, direct)


def test_prompts_of_one_call_are_padded_with_empty_chunks(models):
    model = models["sd1"]
    encoder = model.cond_stage_model.encoders[0]
    with torch.no_grad():
        z = model.get_learned_conditioning(["a", "b " * 80])
        empty = hf_encode(encoder, [chunk([])])[0]
    assert z.shape == (2, 154, 64)
    assert torch.equal(z[0, 77:], empty[0])


def test_comma_backtrack(opts):
    prompt = "a " * 70 + ", " + "b " * 10
    result, count = tokenize_line(prompt)
    # the chunk filled up 5 tokens after the comma: those words move to the next chunk
    assert result[0].tokens[1:77] == [A] * 70 + [COMMA] + [EOS_ID] * 5
    assert result[1].tokens[1:11] == [B] * 10 and count == 85

    opts(comma_padding_backtrack=4)  # the comma is 5 back: too far
    result, count = tokenize_line(prompt)
    assert result[0].tokens[1:76] == [A] * 70 + [COMMA] + [B] * 4 and count == 81
    opts(comma_padding_backtrack=0)
    assert tokenize_line(prompt)[0][1].tokens[1:7] == [B] * 6


def test_break(opts):
    result, count = tokenize_line("a BREAK b")
    assert [c.tokens[1:3] for c in result] == [[A, EOS_ID], [B, EOS_ID]] and count == 76
    # a BREAK inside brackets is a weighted word, as in A1111
    result, _ = tokenize_line("(a BREAK b)")
    assert len(result) == 1 and result[0].tokens[1:4] == [A, 2568, B]
    assert result[0].multipliers[1:4] == pytest.approx([1.1, -1.1, 1.1])
    opts(emphasis="None")
    result, _ = tokenize_line("a BREAK b")
    assert len(result) == 1 and result[0].tokens[1:4] == [A, 2568, B]


def test_text_fixes_of_a1111_tokenizers():
    # ftfy: curly quotes, full-width characters and ligatures become ASCII (CJK prompts often use "，")
    assert conditioning.tokenize(["“a”，ﬁne"]) == conditioning.tokenize(['"a",fine'])
    # open_clip also unescapes HTML twice
    assert conditioning.tokenize(["a &amp;lt; b"], "openclip") == conditioning.tokenize(["a < b"])


# -- emphasis -------------------------------------------------------------------------------------------------------


def weighted(z: torch.Tensor, multipliers: list[list[float]], normalize: bool) -> torch.Tensor:
    m = torch.tensor(multipliers, dtype=torch.float32)[..., None]
    out = z * m
    return out * (z.mean() / out.mean()) if normalize else out


CAT, DOG = 2368, 1929
WEIGHTS = [1.0, 1.0, 1.5, 1 / 1.1] + [1.0] * 73


@pytest.fixture
def shifted_sd1(models):
    """The tiny SD1 model with a bias on its final layer norm for one test.

    Random tiny encoders end in a layer norm without bias, so their outputs average to ~0 and the "Original"
    mean restoration would divide rounding noise by rounding noise; real encoders' outputs have a mean.
    """
    model = models["sd1"]
    bias = model.cond_stage_model.encoders[0].transformer.final_layer_norm.bias
    with torch.no_grad():
        bias += 0.25
    yield model
    with torch.no_grad():
        bias -= 0.25


@pytest.mark.parametrize("mode", ["Original", "No norm", "Ignore", "None"])
def test_emphasis_math(shifted_sd1, opts, mode):
    opts(emphasis=mode)
    model = shifted_sd1
    encoder = model.cond_stage_model.encoders[0]
    prompts = ["a (cat:1.5) [dog]", "a cat dog"]
    with torch.no_grad():
        z = model.get_learned_conditioning(prompts)
        if mode == "None":  # brackets and numbers are text
            ids = [chunk(conditioning.tokenize([prompts[0]])[0]), chunk([A, CAT, DOG])]
        else:
            ids = [chunk([A, CAT, DOG])] * 2
        raw = hf_encode(encoder, ids)[0]
    if mode in ("Original", "No norm"):
        # the mean is restored over the whole call (both prompts), as A1111 does
        expected = weighted(raw, [WEIGHTS, [1.0] * 77], normalize=mode == "Original")
    else:
        expected = raw
    assert (z - expected).abs().max().item() < 1e-6
    if mode == "Original":
        assert z.mean().item() == pytest.approx(raw.mean().item(), rel=1e-5)
        alone = model.get_learned_conditioning(prompts[:1])
        assert not torch.equal(alone[0], z[0])  # another call, another mean


def test_repeated_texts_count_in_the_emphasis_mean(shifted_sd1):
    # A1111 encodes a schedule's texts one per step; a repeated text weighs more in the mean than a single one
    model = shifted_sd1
    encoder = model.cond_stage_model.encoders[0]
    texts = ["(cat:1.5)", "(cat:1.5)", "dog"]
    with torch.no_grad():
        z = model.get_learned_conditioning(texts)
        raw = hf_encode(encoder, [chunk([CAT]), chunk([CAT]), chunk([DOG])])[0]
    m_cat = [1.0, 1.5] + [1.0] * 75
    expected = weighted(raw, [m_cat, m_cat, [1.0] * 77], normalize=True)
    assert (z - expected).abs().max().item() < 1e-6


def test_bad_weight_is_a_clear_error(models):
    with pytest.raises(UserError, match=r"1\.2\.3"):
        models["sd1"].get_learned_conditioning(["a (cat:1.2.3)"])


# -- clip skip ------------------------------------------------------------------------------------------------------


def test_clip_skip_sd1(models, opts):
    model = models["sd1"]
    encoder = model.cond_stage_model.encoders[0]
    ids = [chunk([A, CAT])]
    with torch.no_grad():
        last = hf_encode(encoder, ids)[0]
        penultimate = hf_encode(encoder, ids, layer=-2, norm=True)[0]
        z1 = model.get_learned_conditioning(["a cat"])
        opts(CLIP_stop_at_last_layers=2)
        z2 = model.get_learned_conditioning(["a cat"])
    assert torch.equal(z1, last)
    assert torch.equal(z2, penultimate)
    assert (z1 - z2).abs().max() > 1e-3


def test_sd2_uses_the_penultimate_layer_with_final_norm_whatever_clip_skip(models, opts):
    model = models["sd2v"]
    encoder = model.cond_stage_model.encoders[0]
    with torch.no_grad():
        expected = hf_encode(encoder, [chunk([A, CAT], pad=0)], layer=-2, norm=True)[0]
        z1 = model.get_learned_conditioning(["a cat"])
        opts(CLIP_stop_at_last_layers=2)
        z2 = model.get_learned_conditioning(["a cat"])
    assert torch.equal(z1, expected) and torch.equal(z2, expected)


def test_sdxl_layers_and_clip_l_skip(models, opts):
    model = models["sdxl"]
    clip_l, clip_g = model.cond_stage_model.encoders
    with torch.no_grad():
        l_penultimate = hf_encode(clip_l, [chunk([A, CAT])], layer=-2)[0]
        l_last = hf_encode(clip_l, [chunk([A, CAT])], layer=-1)[0]
        g_penultimate = hf_encode(clip_g, [chunk([A, CAT], pad=0)], layer=-2)[0]
        c = model.get_learned_conditioning(SdConditioning(["a cat"], width=64, height=64))
        assert torch.equal(c["crossattn"], torch.cat([l_penultimate, g_penultimate], dim=-1))
        opts(CLIP_stop_at_last_layers=2)  # ignored without sdxl_clip_l_skip
        assert torch.equal(model.get_learned_conditioning(["a cat"])["crossattn"], c["crossattn"])
        opts(sdxl_clip_l_skip=True, CLIP_stop_at_last_layers=1)
        skipped = model.get_learned_conditioning(["a cat"])["crossattn"]
    assert torch.equal(skipped, torch.cat([l_last, g_penultimate], dim=-1))


# -- SDXL pooled and size conditioning ------------------------------------------------------------------------------


def test_sdxl_pooled_and_vector(models, opts):
    opts(sdxl_crop_top=8, sdxl_crop_left=16)
    model = models["sdxl"]
    clip_g = model.cond_stage_model.encoders[1]
    prompts = SdConditioning(["a cat " * 40, "dog"], width=96, height=64)
    with torch.no_grad():
        c = model.get_learned_conditioning(prompts)
        # pooled: OpenCLIP's projected output at the end token of the first chunk
        _, pooled = hf_encode(clip_g, [chunk([A, CAT] * 37 + [A], pad=0), chunk([DOG], pad=0)])
    assert c["crossattn"].shape == (2, 154, 128)
    assert c["vector"].shape == (2, 64 + 6 * 8)
    assert torch.equal(c["vector"][:, :64], pooled)
    sizes = conditioning.sdxl_size_embedding(torch.tensor([[64.0, 96, 8, 16, 64, 96]] * 2), 8)
    assert torch.equal(c["vector"][:, 64:], sizes)
    assert model.unet.config.projection_class_embeddings_input_dim == c["vector"].shape[1]


def test_sdxl_empty_negative_prompt_is_zeroed(models):
    model = models["sdxl"]
    with torch.no_grad():
        neg = model.get_learned_conditioning(SdConditioning([""], is_negative_prompt=True, width=64, height=64))
        empty = model.get_learned_conditioning(SdConditioning([""], width=64, height=64))
    assert not neg["crossattn"].any() and not neg["vector"][:, :64].any()
    assert neg["vector"][:, 64:].abs().sum() > 0  # the size embeddings stay
    assert empty["crossattn"].abs().sum() > 0


# -- scheduled prompts through prompt_parser ------------------------------------------------------------------------


def test_schedule_texts_share_a_call(models):
    model = models["sd1"]
    with torch.no_grad():
        (schedule,) = prompt_parser.get_learned_conditioning(model, ["[a:b " * 1 + "c " * 80 + ":2]"], 4)
        direct = model.get_learned_conditioning(["a", "b " + "c " * 80])
    assert [entry.end_at_step for entry in schedule] == [2, 4]
    assert torch.equal(schedule[0].cond, direct[0]) and torch.equal(schedule[1].cond, direct[1])


# -- bad input ------------------------------------------------------------------------------------------------------


BAD_PROMPTS = {
    "unbalanced": "a ((cat [dog",
    "stray closers": "a cat)) dog]]",
    "bad weight": "(x:abc)",
    "bad schedule": "[a:b:c:d]",
    "deep round": "(" * 1000 + "a" + ")" * 1000,
    "deep square": "[" * 1000 + "a",
    "deep schedule": "[a:" * 1000 + "b" + ":0.5]" * 1000,
}


@pytest.mark.parametrize("name", list(BAD_PROMPTS))
def test_bad_prompts_are_read_like_a1111(models, name, caplog):
    model = models["sd1"]
    prompt = BAD_PROMPTS[name]
    start = time.process_time()  # CPU time: the bound holds on a busy machine too
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        c = prompt_parser.get_multicond_learned_conditioning(model, [prompt], 20)
    assert time.process_time() - start < 2
    assert c.batch[0][0].schedules[0].cond.shape[-1] == 64
    assert not caplog.records


def test_a_100000_character_prompt(models):
    prompt = "masterpiece, (best quality:1.2), [detailed] " * 2300  # 101,200 characters
    start = time.process_time()
    with torch.no_grad():
        z = models["sd1"].get_learned_conditioning([prompt])
    tokens, limit = token_counter.count_tokens(prompt, 20)
    assert z.shape[1] == 77 * (limit // 75) and 6 * 2300 <= tokens <= limit
    assert time.process_time() - start < 60  # 185 chunks, one encoder call each (as A1111)


# -- token counter --------------------------------------------------------------------------------------------------


def test_token_counter(models, opts):
    sd_models.load_model(sd_models.find_checkpoint(models["sd1"].sd_checkpoint_info.name))
    assert token_counter.count_tokens("", 20) == (0, 75)
    assert token_counter.count_tokens("a " * 76, 20) == (76, 150)
    assert token_counter.count_tokens("a BREAK b", 20) == (76, 150)
    # the longest text of the schedule counts
    assert token_counter.count_tokens("[a:" + "b " * 80 + ":5]", 20) == (80, 150)
    assert token_counter.count_tokens("[a:" + "b " * 80 + ":5]", 4) == (1, 75)  # step 5 is never reached
    assert token_counter.count_tokens("[" + "b " * 80 + ":a:50]", 20) == (80, 150)
    # AND splits a positive prompt only; extra-network tags are not counted
    assert token_counter.count_tokens("a a AND b", 20) == (2, 75)
    assert token_counter.count_tokens("a a AND b", 20, is_positive=False) == (4, 75)
    assert token_counter.count_tokens("a <lora:x:0.5> b", 20) == (2, 75)
    # unreadable weights are counted literally instead of failing while the user types
    assert token_counter.count_tokens("(a:1.2.3)", 20)[0] > 1
    assert token_counter.update_token_counter("a b", 20) == "<span class='gr-box gr-text-input'>2/75</span>"


def test_token_counter_includes_styles_and_callbacks(models, opts, monkeypatch, tmp_path):
    from modules import script_callbacks, styles

    db = styles.StyleDatabase(tmp_path / "styles.csv")
    db.styles["long"] = styles.PromptStyle("long", "{prompt} " + "b " * 80, "")
    monkeypatch.setattr(shared, "prompt_styles", db)
    assert token_counter.count_tokens("a", 20, ["long"]) == (81, 150)
    opts(include_styles_into_token_counters=False)
    assert token_counter.count_tokens("a", 20, ["long"]) == (1, 75)

    def double(params):
        params.prompt = params.prompt + " " + params.prompt

    script_callbacks.on_before_token_counter(double)
    try:
        assert token_counter.count_tokens("a", 20) == (2, 75)
    finally:
        script_callbacks.remove_callbacks_for_function(double)


# -- infotext -------------------------------------------------------------------------------------------------------


def test_infotext_emphasis(models, opts):
    model = models["sd1"]
    assert conditioning.infotext_params(model, ["(a:1.2)"], [""], 20) == {}
    opts(emphasis="No norm")
    assert conditioning.infotext_params(model, ["(a:1.2)"], [""], 20) == {"Emphasis": "No norm"}
    assert conditioning.infotext_params(model, ["a"], ["[b]"], 20) == {"Emphasis": "No norm"}
    # schedules are expanded first: "[a:b:5]" never reaches the encoder with a bracket
    assert conditioning.infotext_params(model, ["[a:b:5]"], [""], 20) == {}


# -- cond / uncond padding --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["sd1", "sdxl"])
def test_empty_prompt_conditioning_pads_cond_and_uncond(models, key):
    from modules.sd_samplers_cfg_denoiser import pad_to_tokens

    model = models[key]
    empty = model.cond_stage_model_empty_prompt
    with torch.no_grad():
        expected = model.get_learned_conditioning([""])
        uncond = model.get_learned_conditioning(SdConditioning(["a cat"], width=64, height=64))
    expected = expected["crossattn"] if key == "sdxl" else expected
    uncond = uncond["crossattn"] if key == "sdxl" else uncond
    assert torch.equal(empty, expected) and empty.shape == (1, 77, expected.shape[-1])
    # pad_cond_uncond: a one-chunk uncond next to a two-chunk cond gets the empty prompt's chunk
    padded = pad_to_tokens(uncond, 154, empty)
    assert torch.equal(padded, torch.cat([uncond, empty], dim=1))
