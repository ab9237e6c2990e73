"""yi_helpers.quantize: RTN by hand, the support checks, calibration text, and a real
quantize -> save -> reload round trip on a tiny Llama (seconds)."""

from __future__ import annotations

import json

import pytest
import torch

from yi_helpers import load
from yi_helpers import quantize as q
from yi_helpers.bench import perplexity
from yi_helpers.loading import kernel_backend
from yi_helpers.measure import model_bytes
from yi_helpers.quantize import algorithms, drivers
from yi_helpers.resolve import quant_method
from yi_helpers.quiet import import_gptqmodel
from yi_helpers.chat import render


# --- round-to-nearest --------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_rtn_error_is_at_most_half_a_step(bits, symmetric):
    w = torch.randn(16, 256, generator=torch.Generator().manual_seed(0))
    deq, step = q.rtn_quantize(w, bits=bits, group_size=64, symmetric=symmetric)
    assert deq.shape == w.shape and step.shape == (16, 4)
    err = (deq - w).abs().reshape(16, 4, 64)
    assert torch.all(err <= step.unsqueeze(-1) / 2 + 1e-6)
    assert err.max() > 0  # it did quantize


def test_rtn_is_exact_on_representable_values():
    step, low = 0.125, -0.5
    levels = torch.randint(0, 16, (8, 128), generator=torch.Generator().manual_seed(1))
    levels[:, ::64] = 0  # every group spans the full grid: min and max present
    levels[:, 1::64] = 15
    w = low + step * levels.float()
    deq, steps = q.rtn_quantize(w, bits=4, group_size=64)
    assert torch.allclose(steps, torch.full_like(steps, step))
    assert torch.allclose(deq, w, atol=1e-6)
    # symmetric: step = 2 max|w| / 15; with max|w| = 7.5 the grid is the integers -8..7
    ints = torch.randint(-7, 8, (8, 128), generator=torch.Generator().manual_seed(2)).float()
    ints[:, ::64] = 7.5  # sets the step to exactly 1 (7.5 itself rounds to 7 or 8 -> clamp 7)
    deq, steps = q.rtn_quantize(ints, bits=4, group_size=64, symmetric=True)
    assert torch.allclose(steps, torch.ones_like(steps))
    on_grid = ints != 7.5
    assert torch.equal(deq[on_grid], ints[on_grid])


def test_rtn_fewer_bits_more_error_and_bad_group():
    w = torch.randn(8, 128, generator=torch.Generator().manual_seed(2))
    e4 = (q.rtn_quantize(w, 4, 64)[0] - w).abs().mean()
    e8 = (q.rtn_quantize(w, 8, 64)[0] - w).abs().mean()
    assert e8 < e4 / 8
    with pytest.raises(ValueError, match="does not divide"):
        q.rtn_quantize(w, 4, 96)


def test_rtn_codes_fit_in_bits_also_for_one_signed_groups():
    w = torch.rand(4, 128, generator=torch.Generator().manual_seed(3)) + 0.5  # all positive
    codes, zeros, steps = algorithms.rtn_codes(w, bits=4, group_size=64)
    assert codes.dtype == torch.int32 and codes.min() >= 0 and codes.max() <= 15
    assert torch.equal(zeros, torch.zeros_like(zeros))  # the grid starts at 0, zero point 0
    deq = (codes - zeros.repeat_interleave(64, 1)) * steps.repeat_interleave(64, 1)
    assert torch.allclose(deq, q.rtn_quantize(w, 4, 64)[0])
    assert torch.equal(algorithms.dequantize_codes(codes, zeros, steps), deq)
    assert torch.all((deq - w).abs() <= steps.repeat_interleave(64, 1) / 2 + 1e-6)


def test_pack_awq_gemm_is_what_gptqmodel_unpacks():
    import_gptqmodel()  # quietly
    from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm

    w = torch.randn(48, 128, generator=torch.Generator().manual_seed(4))
    codes, zeros, steps = algorithms.rtn_codes(w, bits=4, group_size=64)
    packed = algorithms.pack_awq_gemm(codes, zeros, steps)
    assert packed["qweight"].shape == (128, 6) and packed["qweight"].dtype == torch.int32
    assert packed["qzeros"].shape == (2, 6) and packed["scales"].shape == (2, 48)
    theirs = dequantize_gemm(packed["qweight"], packed["qzeros"], packed["scales"], 4, 64)
    ours = (codes - zeros.repeat_interleave(64, 1)) * steps.half().float().repeat_interleave(64, 1)
    # equal up to fp16 rounding of the product (a misplaced code would be off by a whole step)
    assert torch.allclose(theirs.float().T, ours, rtol=2e-3, atol=1e-3)
    assert (theirs.float().T - ours).abs().max() < steps.min() / 10
    with pytest.raises(ValueError, match="multiple of 8"):
        algorithms.pack_awq_gemm(codes[:44], zeros[:44], steps[:44])


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_with_uncorrelated_inputs_is_rtn(symmetric, act_order):
    # H = identity: no other column can absorb a column's rounding error, so GPTQ = RTN
    w = torch.randn(48, 128, generator=torch.Generator().manual_seed(0))
    rtn, _ = q.rtn_quantize(w, 4, 32, symmetric=symmetric)
    gptq = q.gptq_quantize_weight(w, torch.eye(128), 4, 32, symmetric=symmetric, act_order=act_order)
    assert torch.allclose(gptq, rtn, atol=1e-6)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_lowers_the_output_error_on_its_calibration_inputs(symmetric, act_order):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 256, generator=gen)
    # correlated inputs with a few large channels, as in a real layer
    x = torch.randn(2048, 32, generator=gen) @ torch.randn(32, 256, generator=gen)
    x[:, :4] *= 10
    x += 0.1 * torch.randn(2048, 256, generator=gen)
    hessian = 2 * x.T @ x / len(x)
    rtn, _ = q.rtn_quantize(w, 4, 64, symmetric=symmetric)
    gptq = q.gptq_quantize_weight(w, hessian, 4, 64, symmetric=symmetric, act_order=act_order)
    assert q.output_error(w, gptq, x) < 0.6 * q.output_error(w, rtn, x)
    # every weight still sits on its group's grid: at most 16 distinct values per row and group
    groups = gptq.reshape(64, 4, 64)
    assert max(len(torch.unique(g)) for row in groups for g in row) <= 16


def test_awq_scales_protect_the_large_input_channels():
    gen = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(32, 128, generator=gen), torch.randn(48, 128, generator=gen)
    x = torch.randn(1024, 128, generator=gen)
    x[:, :3] *= 30  # a few salient input channels, as in real layers
    scales, a, (q1, q2) = q.awq_scales([w1, w2], x, 4, 64)
    assert scales.shape == (128,) and 0 < a <= 1 and scales[:3].min() > scales[3:].max()
    rtn = [q.rtn_quantize(w, 4, 64)[0] for w in (w1, w2)]
    awq_err = q.output_error(w1, q1, x) + q.output_error(w2, q2, x)
    rtn_err = q.output_error(w1, rtn[0], x) + q.output_error(w2, rtn[1], x)
    assert awq_err < 0.8 * rtn_err
    # uniform inputs: nothing to protect, a = 0 (plain RTN) is as good as any scale
    _, _, (flat,) = q.awq_scales([w1], torch.ones(16, 128))
    assert q.output_error(w1, flat, torch.ones(16, 128)) <= q.output_error(w1, rtn[0], torch.ones(16, 128)) + 1e-6
    with pytest.raises(ValueError, match="input features"):
        q.awq_scales([w1], torch.randn(4, 64))


def test_gptq_checks_shapes():
    with pytest.raises(ValueError, match="hessian"):
        q.gptq_quantize_weight(torch.zeros(4, 64), torch.eye(32))
    with pytest.raises(ValueError, match="group_size"):
        q.gptq_quantize_weight(torch.zeros(4, 96), torch.eye(96), group_size=64)


def test_awq_needs_llama_blocks():
    with pytest.raises(q.UnsupportedQuantizationError, match="Llama-style blocks"):
        drivers._llama_layers(torch.nn.Linear(4, 4))


def test_layer_inputs_one_row_per_token(tiny_model):
    model, tok = tiny_model
    texts = ["Hello there.", "你好，世界。今天天气很好。"]
    x = q.layer_inputs(model, tok, texts, model.model.layers[1].mlp.down_proj)
    n = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert x.shape == (n, 256) and x.dtype == torch.float32
    assert not model.model.layers[1].mlp.down_proj._forward_pre_hooks  # hook removed


def test_layer_inputs_stop_at_the_module_with_the_same_rows(tiny_model):
    model, tok = tiny_model
    texts = ["Hello there.", "你好，世界。"]
    target, later = model.model.layers[0].self_attn.q_proj, model.model.layers[1].mlp.down_proj
    full, reached = [], []
    handles = [target.register_forward_pre_hook(lambda _m, a: full.append(a[0][0].float())),
               later.register_forward_pre_hook(lambda _m, a: reached.append(1))]
    with torch.no_grad():  # the full passes, for the reference rows
        for t in texts:
            model(tok(t, add_special_tokens=False, return_tensors="pt")["input_ids"])
    reference = torch.cat(full)
    reached.clear()
    x = q.layer_inputs(model, tok, texts, target)
    for h in handles:
        h.remove()
    assert torch.equal(x, reference)
    assert not reached  # the passes stopped at layer 0: layer 1 never ran


def test_dequantize_a_plain_model_says_what_it_is_for(tiny_model):
    with pytest.raises(ValueError, match="no GPTQ, AWQ or torchao layers"):
        q.dequantize(tiny_model[0])


def test_layer_inputs_of_a_module_outside_the_model(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="did not run"):
        q.layer_inputs(model, tok, ["Hello."], torch.nn.Linear(4, 4))


def test_rtn_quantize_model_skips_embeddings(tiny_model):
    model, _ = tiny_model
    before = model.model.embed_tokens.weight.clone()
    changed = q.rtn_quantize_model(model, 4, 64)
    assert changed == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    assert torch.equal(model.model.embed_tokens.weight, before)


# --- support checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("method,bits,match", [
    ("awq", 8, "awq does not do 8-bit"), ("gptq", 3, "gptq does not do 3-bit"),
    ("int8-weight-only", 4, "does not do 4-bit"), ("bnb", 4, "Unknown method")])
def test_unsupported_combinations_name_what_is(method, bits, match):
    with pytest.raises(q.UnsupportedQuantizationError, match=match) as info:
        drivers.check_supported(method, bits)
    assert "gptq (8/4-bit), awq (4-bit), int8-weight-only (8-bit)" in str(info.value)


def test_group_size_must_divide_widths():
    with pytest.raises(q.UnsupportedQuantizationError, match="group_size=64"):
        drivers.check_supported("gptq", 4, 128, widths=[576, 1536])
    drivers.check_supported("gptq", 4, 128, widths=[4096, 11008])


def test_missing_backend_is_named(monkeypatch):
    real = drivers.importlib.util.find_spec
    monkeypatch.setattr(drivers.importlib.util, "find_spec",
                        lambda name: None if name == "gptqmodel" else real(name))
    with pytest.raises(q.UnsupportedQuantizationError, match="gptqmodel==7.6.0"):
        drivers.check_supported("awq", 4)


def test_quantize_refuses_before_any_work(tmp_path):
    with pytest.raises(q.UnsupportedQuantizationError, match="awq does not do 8-bit"):
        q.quantize("no-such-folder", "awq", bits=8, out_dir=tmp_path / "out")
    with pytest.raises(q.UnsupportedQuantizationError, match="use group_size=64"):
        q.quantize("embedded", "gptq", bits=4, group_size=128, out_dir=tmp_path / "out2")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_gptq_options_are_for_gptq_and_never_asymmetric(tmp_path):
    with pytest.raises(ValueError, match="for method='gptq'"):
        q.quantize("embedded", "awq", bits=4, group_size=64, out_dir=tmp_path / "a",
                   gptq_options={"damp_percent": 0.1})
    with pytest.raises(q.UnsupportedQuantizationError, match="reload broken"):
        q.quantize("embedded", "gptq", bits=4, group_size=64, out_dir=tmp_path / "b",
                   gptq_options={"sym": False})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_quantize_on_cuda_without_a_gpu_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="no CUDA GPU.*Use device='auto' or 'cpu'"):
        q.quantize("embedded", "int8-weight-only", bits=8, out_dir=tmp_path / "out",
                   device="cuda")
    assert not (tmp_path / "out").exists()


# --- calibration, sizes -----------------------------------------------------------------------

def test_calibration_texts_go_through_the_chat_template(embedded):
    _, tok = embedded
    conv = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Hello!"}]
    texts = q.calibration_texts(tok, [conv, {"messages": conv}, "plain text"], n=10)
    assert texts[0] == texts[1] == render(conv, add_generation_prompt=False, template=tok)
    assert "<|im_start|>assistant\nHello!<|im_end|>" in texts[0] and texts[2] == "plain text"
    default = q.calibration_texts(tok)  # the bilingual calibration set, through the template
    assert len(default) == drivers.DEFAULT_CALIBRATION_SAMPLES == 32
    assert sum("番茄" in t or "春节" in t for t in default) == 2 and all("<|im_start|>" in t for t in default)
    picked = q.calibration_texts(tok, [f"t{i}" for i in range(50)], n=5, seed=1)
    assert len(picked) == 5 and picked == q.calibration_texts(
        tok, [f"t{i}" for i in range(50)], n=5, seed=1)


def test_size_ratio_for_yi_and_embedded():
    yi = q.size_ratio("01-ai/Yi-6B-Chat", 4, 128)
    assert 0.29 < yi < 0.34  # about 0.3x: the 64K x 4096 embedding and LM head stay 16-bit
    small = q.size_ratio("embedded", 4, 64)
    assert 0.38 < small < 0.45  # the tied 49K x 576 embedding is a fifth of the model
    assert q.size_ratio("embedded", 16) == 1.0
    assert q.size_ratio("01-ai/Yi-6B-Chat", 8, 128) > yi


# --- a real round trip on a tiny model -----------------------------------------------------------

@pytest.fixture
def tiny_model(embedded):
    """A tiny random Llama with the embedded tokenizer; widths 128/256 (AWQ needs output widths
    that are multiples of 64)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    _, tok = embedded
    config = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=256, tie_word_embeddings=True)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tok


#: four bilingual conversations: enough calibration for the tiny model's GPTQ and AWQ
CALIBRATION = [[{"role": "user", "content": f"Question {i}? 问题{i}"},
                {"role": "assistant", "content": f"Answer {i}, about ships and the sea."}]
               for i in range(4)]


@pytest.mark.parametrize("method,bits", [("gptq", 4), ("awq", 4), ("int8-weight-only", 8)])
def test_quantize_save_reload_same_greedy_reply(tiny_model, tmp_path, method, bits):
    from yi_helpers.chat import chat

    model, tok = tiny_model
    messages = [{"role": "user", "content": "Hello"}]
    text = "The harbour town wakes early."

    def before_save(quantized):
        weight = quantized.model.layers[1].mlp.down_proj.weight
        return (chat(quantized, tok, messages, max_new_tokens=8),
                perplexity(quantized, tok, text)["ppl"],
                weight.detach().float().clone() if method != "int8-weight-only" else None)

    result = q.quantize(model, method, bits=bits, group_size=64, calibration=CALIBRATION,
                        out_dir=tmp_path / method, tokenizer=tok, before_save=before_save)
    assert result.seconds > 0 and result.size_bytes > 0
    assert quant_method(result.out_dir) in {"gptq", "awq", "torchao"}
    assert result.n_calibration == (0 if method == "int8-weight-only" else 4)
    reloaded, tok2 = load(result.out_dir)
    reply, ppl = chat(reloaded, tok2, messages, max_new_tokens=8), perplexity(reloaded, tok2, text)["ppl"]
    reference = perplexity(model, tok, text)["ppl"]
    assert 0 < model_bytes(reloaded) < model_bytes(model)  # packed tensors counted
    if method != "int8-weight-only":  # stored as checkpoints ship: 16-bit embedding and norms
        from safetensors import safe_open

        for path in result.out_dir.glob("*.safetensors"):
            with safe_open(str(path), "pt") as f:
                assert "F32" not in {f.get_slice(k).get_dtype() for k in f.keys()}
    assert ppl == pytest.approx(reference, rel=0.2 if bits == 4 else 0.02)  # quantized, not broken
    if method == "gptq":
        # before saving: a float32 copy of GPTQModel's model, made ready as its loader does
        # one calibration pass per block (see quantize._gptqmodel), as saved
        meta = json.loads((result.out_dir / "quantize_config.json").read_text())["meta"]
        assert meta["true_sequential"] is False
        dense = q.dequantize(load(result.out_dir)[0])
        assert not any(hasattr(m, "qweight") for m in dense.modules())
        assert perplexity(dense, tok2, text)["ppl"] == pytest.approx(ppl, rel=0.01)
        assert torch.equal(dense.model.layers[1].mlp.down_proj.weight, result.before_save[2])
        assert chat(dense, tok2, messages, max_new_tokens=8) == result.before_save[0]
        assert perplexity(dense, tok2, text)["ppl"] == pytest.approx(result.before_save[1], rel=1e-6)
    elif method == "int8-weight-only":
        assert result.before_save[0] == reply
        assert result.before_save[1] == pytest.approx(ppl, rel=0.01)
        stored = reloaded.model.layers[1].mlp.down_proj.weight  # torchao's int8 tensor
        dense = q.dequantize(load(result.out_dir)[0])
        assert type(dense.model.layers[1].mlp.down_proj.weight) is torch.nn.Parameter
        assert torch.equal(dense.model.layers[1].mlp.down_proj.weight, stored.dequantize().float())
        assert dense.dtype == torch.float32
        assert perplexity(dense, tok2, text)["ppl"] == pytest.approx(ppl, rel=0.01)
    else:  # awq: the file holds exactly the weights the model had in memory (in float32)
        dense = q.dequantize(load(result.out_dir)[0])
        assert torch.equal(dense.model.layers[1].mlp.down_proj.weight, result.before_save[2])
        assert chat(dense, tok2, messages, max_new_tokens=8) == result.before_save[0]
        assert perplexity(dense, tok2, text)["ppl"] == pytest.approx(result.before_save[1], rel=1e-5)
        assert ppl == pytest.approx(result.before_save[1], rel=0.01)  # the int4 kernel, in bf16
        with pytest.raises(ValueError, match="fresh load"):
            q.dequantize(reloaded)  # its int4 kernel repacked the weights at the first forward
        fresh = load(result.out_dir)[0]  # a copy dequantizes, the kernel stays
        copied = q.dense_copy(fresh, result.out_dir)
        assert copied is not fresh and any(hasattr(m, "qweight") for m in fresh.modules())
        assert perplexity(fresh, tok2, text)["ppl"] == pytest.approx(ppl, rel=1e-4)
        assert torch.equal(copied.model.layers[1].mlp.down_proj.weight, result.before_save[2])
    if method == "gptq":  # yi_helpers.load hands GPTQ folders to GPTQModel
        assert chat(load(str(result.out_dir), device="cpu")[0], tok2, messages,
                    max_new_tokens=8) == reply


def test_kernel_backend_builds_nothing_on_a_gpu_unless_asked():
    assert kernel_backend("cuda") == kernel_backend("cuda:1") == "torch"
    assert kernel_backend("cpu") is None  # GPTQModel's own choice, as measured in lesson 05
    assert kernel_backend("cuda", "auto") == "auto" and kernel_backend("cpu", "torch") == "torch"


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_load_with_the_torch_kernel(tiny_model, tmp_path, method):
    """The kernel a GPU gets by default (``"torch"``), here on the CPU: GPTQModel's plain PyTorch
    layers, for GPTQ folders (GPTQModel.load) and AWQ ones (transformers' AwqConfig)."""
    model, tok = tiny_model
    result = q.quantize(model, method, bits=4, group_size=64, calibration=CALIBRATION,
                        out_dir=tmp_path / method, tokenizer=tok)
    text = "The harbour town wakes early."
    auto, _ = load(result.out_dir)
    torch_kernel, tok2 = load(result.out_dir, backend="torch")
    kinds = {type(m).__name__ for m in torch_kernel.modules() if hasattr(m, "qweight")}
    assert kinds == {"TorchLinear" if method == "gptq" else "AwqTorchLinear"}
    assert perplexity(torch_kernel, tok2, text)["ppl"] == pytest.approx(
        perplexity(auto, tok2, text)["ppl"], rel=0.02)  # same weights, another kernel's rounding


# --- load(): quantized folders and hub ids ---------------------------------------------------------

def test_load_of_an_uncached_quantized_hub_id_offline_says_how_to_get_it(offline_hub_cache):
    from yi_helpers import ModelNotAvailableError

    with pytest.raises(ModelNotAvailableError, match="hf download 01-ai/Yi-6B-Chat-4bits"):
        load("01-ai/Yi-6B-Chat-4bits")


def test_load_of_a_cached_hub_id_works_offline(offline_hub_cache, tiny_llama_dir):
    offline_hub_cache("someone/tiny-chat", tiny_llama_dir)
    model, tok = load("someone/tiny-chat")
    assert model.config.hidden_size == 64 and len(tok) == model.config.vocab_size


def test_load_of_a_missing_folder_names_what_it_takes(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        load(tmp_path / "nothing-here")
