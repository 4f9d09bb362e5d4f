"""Derive the CLIP BPE tokenizer files shipped in configs/tokenizers/clip from open_clip's vocabulary.

The only input is `bpe_simple_vocab_16e6.txt.gz` (MIT), shipped inside the `open_clip_torch` wheel on PyPI.
The construction is the one OpenAI's CLIP tokenizer uses: 256 byte symbols, the same with the end-of-word
marker, one token per merge (48,894 merges), then the two special tokens — 49,408 ids in all.

Usage: python tools/build_tokenizer.py path/to/bpe_simple_vocab_16e6.txt.gz
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "configs" / "tokenizers" / "clip"
N_MERGES = 49152 - 256 - 2


def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable character table of GPT-2/CLIP BPE.

    Order matters: printable bytes first, then the remapped ones, as the vocabulary ids follow this order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def build(gz_path: Path) -> None:
    lines = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), "utf-8")
    (OUT / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", "utf-8")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
