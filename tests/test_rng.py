"""Seeded noise against the parity data (rng.json), Random123's Philox known answers and batch independence."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modules import rng, rng_philox
from modules.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"
RNG_CASES = json.loads((FIXTURES / "rng.json").read_text())["cases"]


def _settings(source: str, ensd: int = 0) -> rng.RngSettings:
    return rng.RngSettings(source=source, eta_noise_seed_delta=ensd, device="cpu")


def _case_id(case: dict) -> str:
    parts = [case["randn_source"], "seeds=" + ",".join(map(str, case["seeds"]))]
    if case["subseed_strength"]:
        parts.append(f"var={case['subseed_strength']}")
    if case["seed_resize_from_h"]:
        parts.append(f"resize={case['seed_resize_from_w']}x{case['seed_resize_from_h']}")
    if case["eta_noise_seed_delta"]:
        parts.append(f"ensd={case['eta_noise_seed_delta']}")
    return "-".join(parts)


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """randn/manual_seed re-seed global generators (A1111 semantics); keep other tests unaffected."""
    settings = rng.default_settings()
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)
    rng.set_default_settings(settings)


@pytest.mark.parametrize("case", RNG_CASES, ids=[_case_id(c) for c in RNG_CASES])
def test_image_rng_matches_parity_exactly(case):
    settings = _settings(case["randn_source"], case["eta_noise_seed_delta"])
    image_rng = rng.ImageRNG(
        case["shape"],
        case["seeds"],
        subseeds=case["subseeds"],
        subseed_strength=case["subseed_strength"],
        seed_resize_from_h=case["seed_resize_from_h"],
        seed_resize_from_w=case["seed_resize_from_w"],
        settings=settings,
    )
    for call, expected in enumerate(case["outputs"]):
        got = image_rng.next()
        want = torch.tensor(expected, dtype=torch.float32)
        assert got.dtype == torch.float32
        assert got.shape == want.shape
        # values are float32 printed with 9 significant digits: exact
        assert torch.equal(got, want), f"call {call}: max error {(got - want).abs().max().item()}"


def test_first_call_of_next_is_first():
    a = rng.ImageRNG((4, 8, 8), [3], settings=_settings("CPU"))
    b = rng.ImageRNG((4, 8, 8), [3], settings=_settings("CPU"))
    assert torch.equal(a.next(), b.first())
    assert a.is_tensor is True


@pytest.mark.parametrize(
    ("counter", "key", "expected"),
    [
        # Random123 known-answer vectors for philox4x32_10
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_known_answers(counter, key, expected):
    block = rng_philox.philox4x32(np.array(counter, dtype=np.uint32).reshape(4, 1), key)
    assert tuple(int(v) for v in block[:, 0]) == expected


def test_philox_reference_row_from_cuda():
    values = rng_philox.Generator(0).randn((3, 4))
    assert values.dtype == np.float32 and values.shape == (3, 4)
    # CUDA computes Box-Muller in float32 while the portable version rounds a float64 result, so they agree to a
    # few float32 ulps rather than bit for bit (the NV parity cases above are bit-exact).
    np.testing.assert_allclose(values[0], [-0.92466259, -0.42534415, -2.6438457, 0.14518388], rtol=0, atol=5e-7)


def test_philox_counter_advances_per_call_and_seed_wraps_like_torch():
    gen = rng_philox.Generator(7)
    first, second = gen.randn((5,)), gen.randn((5,))
    assert gen.offset == 2
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(rng_philox.Generator(7).randn((5,)), first)
    # the element index is the counter, so a longer draw starts with the shorter one
    np.testing.assert_array_equal(rng_philox.Generator(7).randn((2, 4)).ravel()[:5], first)
    np.testing.assert_array_equal(rng_philox.Generator(-1).randn((4,)), rng_philox.Generator(2**64 - 1).randn((4,)))


def test_philox_is_standard_normal():
    values = rng_philox.Generator(123).randn((200_000,)).astype(np.float64)
    assert abs(values.mean()) < 0.01
    assert abs(values.std() - 1.0) < 0.01


@pytest.mark.parametrize("source", ["CPU", "NV"])
@pytest.mark.parametrize("ensd", [0, 31337])
def test_batch_image_equals_that_seed_alone(source, ensd):
    settings = _settings(source, ensd)
    seeds = [11, 12, 4000000000]
    batch = rng.ImageRNG((4, 6, 5), seeds, subseeds=[90, 91, 92], subseed_strength=0.4, settings=settings)
    batch_outputs = [batch.next() for _ in range(3)]
    for i, seed in enumerate(seeds):
        alone = rng.ImageRNG((4, 6, 5), [seed], subseeds=[90 + i], subseed_strength=0.4, settings=settings)
        for step, out in enumerate(batch_outputs):
            assert torch.equal(out[i : i + 1], alone.next()), f"seed {seed}, call {step}"


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_next_for_image_continues_that_images_generator(source):
    """Samplers that run image by image draw each image's noise alone; it equals the batch draw of that image."""
    settings = _settings(source, 7)
    seeds = [3, 4]
    batch = rng.ImageRNG((4, 3, 3), seeds, settings=settings)
    per_image = rng.ImageRNG((4, 3, 3), seeds, settings=settings)
    with pytest.raises(RuntimeError, match="first noise"):
        per_image.next_for_image(0)
    assert torch.equal(batch.next(), per_image.next())
    expected = [batch.next(), batch.next()]
    for i in (1, 0):  # any order: each image has its own generator
        got = [per_image.next_for_image(i), per_image.next_for_image(i)]
        assert got[0].shape == (1, 4, 3, 3)
        assert torch.equal(got[0][0], expected[0][i]) and torch.equal(got[1][0], expected[1][i])


def test_ensd_changes_only_later_noise():
    plain = rng.ImageRNG((4, 4, 4), [5], settings=_settings("CPU"))
    delta = rng.ImageRNG((4, 4, 4), [5], settings=_settings("CPU", ensd=100))
    assert torch.equal(plain.next(), delta.next())
    later = delta.next()
    assert not torch.equal(plain.next(), later)
    # after the first noise the generator is re-created from seed + ENSD
    assert torch.equal(later[0], torch.randn((4, 4, 4), generator=torch.Generator().manual_seed(105)))


def test_cpu_source_is_torch_cpu_generator():
    got = rng.randn(77, (2, 3), settings=_settings("CPU"))
    assert torch.equal(got, torch.randn((2, 3), generator=torch.Generator().manual_seed(77)))


def test_gpu_source_without_cuda_falls_back_to_cpu():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the GPU source really runs on the GPU")
    gpu = rng.ImageRNG((4, 8, 8), [1234], settings=rng.RngSettings(source="GPU"))
    cpu = rng.ImageRNG((4, 8, 8), [1234], settings=_settings("CPU"))
    for _ in range(2):
        assert torch.equal(gpu.next(), cpu.next())
    assert rng.RngSettings(source="GPU").generation_device == torch.device("cpu")


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_randn_seeds_the_global_generator(source):
    settings = _settings(source)
    first = rng.randn(9, (3, 3), settings=settings)
    follow = rng.randn_without_seed((3, 3), settings=settings)
    like = rng.randn_like(torch.zeros(3, 3), settings=settings)
    gen = rng.create_generator(9, settings=settings)
    for drawn in (first, follow, like):
        assert torch.equal(drawn, rng.randn_without_seed((3, 3), gen, settings=settings))
    assert rng.randn_like(torch.zeros(2, dtype=torch.float64), settings=settings).dtype == torch.float64


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_randn_local_leaves_the_global_generator_alone(source):
    settings = _settings(source)
    rng.manual_seed(1, settings=settings)
    local = rng.randn_local(5, (4,), settings=settings)
    assert torch.equal(local, rng.randn(5, (4,), settings=settings))
    rng.manual_seed(1, settings=settings)
    rng.randn_local(5, (4,), settings=settings)
    after = rng.randn_without_seed((4,), settings=settings)
    assert torch.equal(after, rng.randn(1, (4,), settings=settings))


def test_module_default_settings_apply_when_none_given():
    rng.set_default_settings(_settings("NV"))
    assert torch.equal(rng.randn_local(3, (4,)), torch.from_numpy(rng_philox.Generator(3).randn((4,))))
    assert isinstance(rng.create_generator(3), rng_philox.Generator)


def test_unknown_source_is_a_clear_error():
    with pytest.raises(UserError, match="Unknown random number source 'TPU'"):
        rng.RngSettings(source="TPU")


def test_slerp_endpoints_and_parallel_fallback():
    low = rng.randn_local(1, (1, 4, 3, 3), settings=_settings("CPU"))
    high = rng.randn_local(2, (1, 4, 3, 3), settings=_settings("CPU"))
    torch.testing.assert_close(rng.slerp(0.0, low, high), low)
    torch.testing.assert_close(rng.slerp(1.0, low, high), high)
    # nearly parallel inputs: A1111's linear fallback, with its swapped weights
    torch.testing.assert_close(rng.slerp(0.25, low, low * 2), low * 0.25 + low * 2 * 0.75)


def test_slerp_keeps_the_norm_of_orthogonal_unit_vectors():
    low = torch.tensor([1.0, 0.0]).reshape(1, 2, 1)
    high = torch.tensor([0.0, 1.0]).reshape(1, 2, 1)
    mid = rng.slerp(0.5, low, high)
    torch.testing.assert_close(mid.flatten(), torch.tensor([2**-0.5, 2**-0.5]))
