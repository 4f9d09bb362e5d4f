"""Extra-network tags in prompts (modules/extra_networks.py): parsing, the registry, activation order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from modules import extra_networks
from modules.extra_networks import ExtraNetwork, ExtraNetworkParams, parse_prompt, parse_prompts


def test_tags_are_removed_and_collected_by_kind():
    prompt, data = parse_prompt("a <lora:style:0.8> cat <hypernet:anime:1>, <lyco:detail:1:0.5> <foo:bar>")
    assert prompt == "a  cat ,  "
    assert [p.items for p in data["lora"]] == [["style", "0.8"]]
    assert [p.items for p in data["hypernet"]] == [["anime", "1"]]
    assert [p.items for p in data["lyco"]] == [["detail", "1", "0.5"]]
    assert [p.items for p in data["foo"]] == [["bar"]]  # unknown kinds are stripped too (A1111)


def test_tag_syntax_edges():
    assert parse_prompt("<lora:>x")[0] == "<lora:>x"  # needs at least one character of arguments
    assert parse_prompt("<lo-ra:x>")[0] == "<lo-ra:x>"  # the kind is a \\w+ word
    assert parse_prompt("<lora:a:b:c:d:e>")[1]["lora"][0].items == ["a", "b", "c", "d", "e"]
    prompt, data = parse_prompt("<lora:x:1><lora:y:2>")
    assert prompt == "" and [p.items[0] for p in data["lora"]] == ["x", "y"]


def test_named_and_positional_arguments():
    params = ExtraNetworkParams(["name", "0.5", "te=0.7", "unet=1.1", "dyn=4", "a=b=c"])
    assert params.positional == ["name", "0.5", "a=b=c"]
    assert params.named == {"te": "0.7", "unet": "1.1", "dyn": "4"}
    assert ExtraNetworkParams(["x", 1.0]).positional == ["x", 1.0]  # non-strings (from settings) are positional
    assert ExtraNetworkParams(["x", "1"]) == ExtraNetworkParams(["x", "1"])
    assert ExtraNetworkParams(["x", "1"]) != ExtraNetworkParams(["x", "2"])


def test_a_batch_uses_the_networks_of_its_first_prompt():
    prompts, data = parse_prompts(["a <lora:one:1>", "b <lora:two:1>", "c"])
    assert prompts == ["a ", "b ", "c"]
    assert [p.items[0] for p in data["lora"]] == ["one"]
    assert parse_prompts([]) == ([], {})


class Recorder(ExtraNetwork):
    def __init__(self, name, log):
        super().__init__(name)
        self.log = log

    def activate(self, p, params_list):
        self.log.append(("activate", self.name, [x.items for x in params_list]))

    def deactivate(self, p):
        self.log.append(("deactivate", self.name))


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(extra_networks, "extra_network_registry", {})
    monkeypatch.setattr(extra_networks, "extra_network_aliases", {})
    log: list = []
    a, b = Recorder("alpha", log), Recorder("beta", log)
    extra_networks.register_extra_network(a)
    extra_networks.register_extra_network(b)
    extra_networks.register_extra_network_alias(b, "bee")
    return log


def test_mentioned_kinds_first_then_the_rest_with_no_arguments(registry):
    p = SimpleNamespace(scripts=None)
    _, data = parse_prompt("<bee:x:1><beta:y><unknown:z>")
    extra_networks.activate(p, data)
    assert registry == [("activate", "beta", [["x", "1"], ["y"]]), ("activate", "alpha", [])]
    registry.clear()
    extra_networks.deactivate(p, data)
    assert registry == [("deactivate", "beta"), ("deactivate", "alpha")]


def test_scripts_hear_after_activation(registry):
    calls = []
    scripts = SimpleNamespace(after_extra_networks_activate=lambda p, **kw: calls.append(kw["extra_network_data"]))
    p = SimpleNamespace(scripts=scripts, iteration=0, prompts=["a"], seeds=[1], subseeds=[1])
    _, data = parse_prompt("<alpha:q>")
    extra_networks.activate(p, data)
    assert calls == [data]


def test_user_metadata_side_car(tmp_path):
    model = tmp_path / "thing.safetensors"
    model.write_bytes(b"")
    assert extra_networks.get_user_metadata(str(model)) == {}
    extra_networks.write_user_metadata(str(model), {"activation text": "cat", "preferred weight": 0.7})
    assert extra_networks.get_user_metadata(str(model)) == {"activation text": "cat", "preferred weight": 0.7}
    (tmp_path / "thing.json").write_text("{broken")
    assert extra_networks.get_user_metadata(str(model)) == {}
    assert extra_networks.get_user_metadata(None) == {}
