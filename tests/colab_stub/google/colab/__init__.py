"""A stand-in for Colab's `google.colab` package, put on the test kernel's PYTHONPATH (no google/__init__.py, so
it joins any installed `google` namespace package). Calls are appended as JSON lines to $COLAB_STUB_RECORD."""

import json
import os


def record(name: str, *args) -> None:
    path = os.environ.get("COLAB_STUB_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps([name, *args]) + "\n")
