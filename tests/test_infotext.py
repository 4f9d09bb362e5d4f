"""Infotext create/parse against the A1111 parity data (tests/fixtures/infotext.json), plus the paste mapping."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from modules import infotext_utils, infotext_versions
from modules.infotext_utils import (
    PasteField,
    create_infotext,
    create_override_settings_dict,
    get_override_settings,
    parse_generation_parameters,
    quote,
    unquote,
)
from modules.styles import PromptStyle, StyleDatabase
from tests.opts_defaults import make_opts

FIXTURES = Path(__file__).parent / "fixtures"
DATA = json.loads((FIXTURES / "infotext.json").read_text(encoding="utf-8"))
ATTENTION = json.loads((FIXTURES / "prompt_attention.json").read_text(encoding="utf-8"))


def style_db(styles: list[dict], tmp_path: Path) -> StyleDatabase:
    path = tmp_path / "styles.csv"
    db = StyleDatabase(path)
    for s in styles:
        db.styles[s["name"]] = PromptStyle(s["name"], s["prompt"], s["negative_prompt"], str(path))
    return db


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: c["infotext"][:40])
def test_parse_matches_reference(case, tmp_path):
    opts = make_opts(**DATA["parse_opts"])
    styles = style_db(case["styles"], tmp_path) if "styles" in case else None

    if "expected_error" in case:
        with pytest.raises(Exception) as excinfo:
            parse_generation_parameters(case["infotext"], case["skip_fields"], opts=opts, styles=styles)
        assert type(excinfo.value).__name__ == case["expected_error"]
        return

    res = parse_generation_parameters(case["infotext"], case["skip_fields"], opts=opts, styles=styles)
    assert res == case["expected"]
    assert list(res) == list(case["expected"]), "key order differs from the reference"


def test_parse_without_opts_uses_a1111_defaults():
    case = DATA["cases"][0]
    assert parse_generation_parameters(case["infotext"], case["skip_fields"]) == case["expected"]


def test_skip_fields_default_to_the_setting():
    text = "a cat\nSteps: 20, Sampler: Euler a, Seed: 5, CFG scale: 7"
    res = parse_generation_parameters(text, opts=make_opts(infotext_skip_pasting=["Seed", "Sampler"]))
    assert "Seed" not in res and "Sampler" not in res and res["Steps"] == "20"


def test_styles_setting_ignore_and_discard(tmp_path):
    styles = style_db([{"name": "q", "prompt": "best quality", "negative_prompt": ""}], tmp_path)
    text = "a cat, best quality\nSteps: 20, Sampler: Euler a, CFG scale: 7"

    ignored = parse_generation_parameters(text, opts=make_opts(infotext_styles="Ignore"), styles=styles)
    assert ignored["Prompt"] == "a cat, best quality" and "Styles array" not in ignored

    discarded = parse_generation_parameters(text, opts=make_opts(infotext_styles="Discard"), styles=styles)
    assert discarded["Prompt"] == "a cat" and "Styles array" not in discarded

    applied = parse_generation_parameters(text, opts=make_opts(infotext_styles="Apply"), styles=styles)
    assert applied["Styles array"] == ["q"]


def test_hires_prompt_with_other_styles_keeps_everything(tmp_path):
    styles = style_db([{"name": "q", "prompt": "best quality", "negative_prompt": ""}], tmp_path)
    text = 'a cat, best quality\nSteps: 20, Sampler: Euler a, CFG scale: 7, Hires prompt: "a tiger"'
    res = parse_generation_parameters(text, opts=make_opts(), styles=styles)
    assert res["Prompt"] == "a cat, best quality"
    assert res["Hires prompt"] == "a tiger"
    assert "Styles array" not in res


def test_old_hires_fix_width_height_option():
    text = "x\nSteps: 20, Sampler: Euler a, Size: 512x512, Hires resize: 1024x768"
    res = parse_generation_parameters(text, opts=make_opts(use_old_hires_fix_width_height=True))
    assert (res["Size-1"], res["Size-2"]) == (1024, 768)


def test_backcompat_can_be_disabled():
    text = "a [b:c:3]\nSteps: 20, Sampler: DDIM, CFG scale: 7, Version: v1.5.0"
    assert parse_generation_parameters(text)["Old prompt editing timelines"] is True
    res = parse_generation_parameters(text, opts=make_opts(auto_backcompat=False))
    assert "Old prompt editing timelines" not in res and "Downcast alphas_cumprod" not in res


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1.10.1", "1.10.1"),
        ("v1.7.0-225-g1234567", "1.7.0.post225"),
        ("v1.7.0-RC-5-gf92d6149", "1.7.0rc0"),
        ("not-a-version", None),
        (None, None),
    ],
)
def test_parse_version(text, expected):
    version = infotext_versions.parse_version(text)
    assert (str(version) if version is not None else None) == expected


def make_p(case: dict) -> SimpleNamespace:
    return SimpleNamespace(**case["p"])


@pytest.mark.parametrize("case", DATA["create_cases"], ids=lambda c: c["expected"][:40])
def test_create_matches_reference(case):
    p = make_p(case)
    text = create_infotext(
        p,
        p.all_prompts,
        p.all_seeds,
        p.all_subseeds,
        **case["args"],
        opts=make_opts(**case["opts"]),
        program_version=case["program_version"],
    )
    assert text == case["expected"]


def test_created_text_parses_back():
    case = DATA["create_cases"][4]  # per-image list values, a quoted value, a bare flag
    p = make_p(case)
    text = create_infotext(
        p, p.all_prompts, p.all_seeds, p.all_subseeds, **case["args"], opts=make_opts(), program_version="v1.10.1"
    )
    res = parse_generation_parameters(text)
    assert res["Prompt"] == "p1, with comma"
    assert res["Seed"] == "11"
    assert res["Per image"] == "b, c"
    assert res["Template"] == "a {x|y}"
    assert (res["Size-1"], res["Size-2"]) == ("512", "512")


def test_create_fp8_callable_and_failing_values():
    p = make_p(DATA["create_cases"][0])
    p.extra_generation_params = {
        "Computed": lambda p, index, **kwargs: f"{p.steps}-{index}",
        "Broken": lambda **kwargs: 1 / 0,
        "Short list": [],
    }
    opts = make_opts(fp8_storage="Enable for SDXL", add_version_to_infotext=False)
    text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, opts=opts, program_version="x", fp8=True)
    assert text.endswith("FP8 weight: Enable for SDXL, Cache FP16 weight for LoRA: False, Computed: 20-0")


@pytest.mark.parametrize(
    ("sampler", "eta", "ensd_written"),
    [("Euler a", None, True), ("Euler a", 0, False), ("DPM2 a", 0.5, True), ("Euler", None, False), ("X", None, False)],
)
def test_ensd_only_for_samplers_that_use_it(sampler, eta, ensd_written):
    p = make_p(DATA["create_cases"][0])
    p.sampler_name, p.eta = sampler, eta
    text = create_infotext(
        p, p.all_prompts, p.all_seeds, p.all_subseeds, opts=make_opts(eta_noise_seed_delta=31337), program_version=""
    )
    assert ("ENSD: 31337" in text) == ensd_written


@pytest.mark.parametrize("value", ["plain", "a, b", "key: value", "two\nlines", 'say "hi", ok', "日本語, です"])
def test_quote_round_trip(value):
    assert unquote(quote(value)) == value


def test_unquote_leaves_invalid_json():
    assert unquote('"abc') == '"abc'
    assert unquote('"a"b"') == '"a"b"'
    assert unquote("") == ""


def merge_equal(segments):
    merged = []
    for text, weight in segments:
        if merged and merged[-1][1] == weight:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return merged or [["", 1.0]]


@pytest.mark.parametrize("case", ATTENTION["cases"], ids=lambda c: c["text"][:40])
def test_emphasis_weights_follow_the_attention_contract(case):
    if "expected_error" in case:
        with pytest.raises(ValueError):
            infotext_utils._attention_weights(case["text"])
        return
    assert merge_equal(infotext_utils._attention_weights(case["text"])) == case["expected"]


class FakeOptions(SimpleNamespace):
    """An Options-like object with setting labels and A1111's cast_value."""

    def cast_value(self, key, value):
        expected_type = type(self.data_labels[key].default)
        if expected_type is bool and value == "False":
            return False
        return expected_type(value)


def test_override_settings_from_infotext():
    params = parse_generation_parameters(
        "x\nSteps: 20, Sampler: Euler a, CFG scale: 7, Clip skip: 2, ENSD: 31337, Model hash: abc, RNG: CPU, "
        "Eta: 0.5, Tiling: True, Token merging ratio: oops"
    )
    opts = make_opts()
    overrides = get_override_settings(params, opts)
    assert overrides == [
        ("Clip skip", "CLIP_stop_at_last_layers", 2),
        ("RNG", "randn_source", "CPU"),
        ("Tiling", "tiling", True),
        ("Eta", "eta_ancestral", 0.5),
        ("ENSD", "eta_noise_seed_delta", 31337),
    ]

    # Model hash counts only when auto-swapping weights is allowed; skip_fields removes labels.
    opts.disable_weights_auto_swap = False
    labels = [label for label, _, _ in get_override_settings(params, opts, skip_fields=["Clip skip"])]
    assert "Model hash" in labels and "Clip skip" not in labels


def test_override_settings_use_setting_labels_and_cast_value():
    info = SimpleNamespace(default=1, infotext="My setting")
    opts = FakeOptions(data_labels={"my_setting": info}, my_setting=1, disable_weights_auto_swap=True)
    assert get_override_settings({"My setting": "3"}, opts) == [("My setting", "my_setting", 3)]
    assert get_override_settings({"My setting": "1"}, opts) == []


def test_create_override_settings_dict():
    res = create_override_settings_dict(["Clip skip: 2", "ENSD: 31337", "Pad conds: False", "Unknown: 1"], make_opts())
    assert res == {"CLIP_stop_at_last_layers": 2, "pad_cond_uncond": False, "eta_noise_seed_delta": 31337}


def test_paste_field_and_registry():
    field = PasteField("component", "Seed", api="seed")
    component, target = field
    assert (component, target, field.label, field.function, field.api) == ("component", "Seed", "Seed", None, "seed")

    def fn(params):
        return params.get("Size-1")

    fields = [("steps", "Steps"), PasteField("size", fn)]
    infotext_utils.reset()
    infotext_utils.add_paste_fields("txt2img", None, fields)
    registered = infotext_utils.paste_fields["txt2img"]["fields"]
    assert all(isinstance(f, PasteField) for f in registered)
    assert registered[1].function is fn and registered[1].label is None
    infotext_utils.register_paste_params_button(infotext_utils.ParamBinding("button", "img2img"))
    assert infotext_utils.registered_param_bindings[0].paste_field_names == []
    infotext_utils.reset()
    assert not infotext_utils.paste_fields and not infotext_utils.registered_param_bindings
