"""Fuzzing the prompt language and the infotext parser with random text built from their own syntax: no crash.
CI: 5,000 of each; SD_WEBUI_HARDENING_FULL=1: 100,000 of each. (The OpenAPI schema: tests/test_api_fuzz.py.)
"""

from __future__ import annotations

import random
import time

import pytest

from modules import extra_networks, infotext_utils, prompt_parser
from tests.hardening.figures import record, scaled

COUNT = scaled(5_000, 100_000)

PROMPT_TOKENS = [
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    ":",
    "::",
    "|",
    ",",
    " ",
    "  ",
    "\n",
    "\\",
    "\\(",
    "\\[",
    "AND",
    " AND ",
    "BREAK",
    "cat",
    "a dog",
    "0",
    "1",
    "0.5",
    "-1",
    "1e9",
    "1.2.3",
    ".",
    "-",
    "+",
    "nan",
    "inf",
    "99999999999999999999",
    "<lora:x:1>",
    "<lora:",
    ">",
    "<",
    "<hypernet:h:0.5>",
    "<lyco:a:b:c>",
    "#",
    "//",
    '"',
    "'",
    "\x00",
    "\t",
    "é",
    "猫",
    "🐈",
    "\u200b",
    "\ufeff",
    "%",
    "$",
    "[a:b:0.5]",
    "[a|b]",
    "(a:1.1)",
    "((((",
    "))))",
    "[[[",
    "]]]",
    ":1.5)",
]
INFOTEXT_TOKENS = [
    "Steps",
    "Sampler",
    "CFG scale",
    "Seed",
    "Size",
    "Model hash",
    "Model",
    "Negative prompt",
    "Hires upscale",
    "Lora hashes",
    "Template",
    "Schedule type",
    "Denoising strength",
    "RNG",
    "Version",
    "Styles array",
    "VAE",
    ": ",
    ":",
    ", ",
    ",",
    "\n",
    '"',
    '\\"',
    "\\",
    "{",
    "}",
    "[",
    "]",
    "x",
    "512x512",
    "0x0",
    "-1x5",
    "20",
    "-5",
    "1e309",
    "nan",
    "7.0",
    "Euler a",
    "karras",
    "abc",
    '"a, b: c"',
    "\x00",
    "é",
    "🐈",
    " ",
    "Negative prompt: ",
    "(a:1.2.3)",
    "<lora:x:1>",
    "AND",
    "BREAK",
    "true",
    "None",
]


def random_text(rng: random.Random, tokens: list[str], max_tokens: int) -> str:
    parts = [rng.choice(tokens) for _ in range(rng.randrange(max_tokens))]
    if rng.random() < 0.1:
        parts.append("".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(20))))
    return "".join(parts)


def documented(e: Exception) -> bool:
    """A1111's one documented failure: an emphasis weight that is not a number, e.g. (a:1.2.3) (a ValueError that
    is also a UserError here, so the API answers 400)."""
    return isinstance(e, prompt_parser.PromptWeightError) or (
        isinstance(e, ValueError) and "could not convert string to float" in str(e)
    )


def test_prompt_parser_never_crashes():
    rng = random.Random(1)
    crashes, documented_errors = [], 0
    start = time.perf_counter()
    for _ in range(COUNT):
        prompt = random_text(rng, PROMPT_TOKENS, 30)
        try:
            prompt_parser.get_learned_conditioning_prompt_schedules([prompt], rng.randrange(1, 60))
            prompt_parser.get_multicond_prompt_list([prompt])
            prompt_parser.parse_prompt_attention(prompt)
            extra_networks.parse_prompt(prompt)
        except Exception as e:  # anything but the documented refusal is a crash
            if documented(e):
                documented_errors += 1
            else:
                crashes.append(f"{prompt!r}: {type(e).__name__}: {e}")
    record(
        "fuzz",
        parser="prompt",
        tried=COUNT,
        crashes=len(crashes),
        documented_errors=documented_errors,
        seconds=round(time.perf_counter() - start, 1),
    )
    assert not crashes, "\n".join(crashes[:10])


def test_infotext_parser_never_crashes():
    rng = random.Random(2)
    crashes, documented_errors = [], 0
    start = time.perf_counter()
    for _ in range(COUNT):
        text = random_text(rng, INFOTEXT_TOKENS + PROMPT_TOKENS[:20], 40)
        try:
            params = infotext_utils.parse_generation_parameters(text, skip_fields=[])
            assert isinstance(params, dict)
        except Exception as e:
            if documented(e):
                documented_errors += 1
            else:
                crashes.append(f"{text!r}: {type(e).__name__}: {e}")
    record(
        "fuzz",
        parser="infotext",
        tried=COUNT,
        crashes=len(crashes),
        documented_errors=documented_errors,
        seconds=round(time.perf_counter() - start, 1),
    )
    assert not crashes, "\n".join(crashes[:10])


@pytest.mark.parametrize("text", ["(a:1.2.3)\nSteps: 20", "Steps: 20, Size: 9999999999999999999x1", "\x00: \x00"])
def test_png_info_route_answers_hostile_infotext_without_a_500(server, text):
    import base64
    import io

    import requests
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    r = requests.post(
        server.url + "/sdapi/v1/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()}, timeout=30
    )
    assert r.status_code < 500, r.text


def test_an_unparsable_prompt_weight_is_a_400_not_a_500(server):
    import requests

    r = requests.post(
        server.url + "/sdapi/v1/txt2img",
        json={"prompt": "(a:1.2.3)", "steps": 1, "width": 64, "height": 64},
        timeout=120,
    )
    assert r.status_code == 400 and "is not a number" in r.json()["detail"], r.text
