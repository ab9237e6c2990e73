import torch, sys
sys.argv = ["x"]
exec(open(__file__.replace("exp_gptq_layer_error", "exp_gptq_inmemory")).read().split('print("fp32"')[0])
from yi_helpers.corpus import heldout_text
cal = Q.calibration_texts(tok, None, 32, 0)
def capture(texts, name):
    xs = []
    mod = model.get_submodule(name)
    h = mod.register_forward_hook(lambda m, i, o: xs.append(i[0][0].float()))
    with torch.no_grad():
        for t in texts:
            model(tok(t, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :512])
    h.remove()
    return torch.cat(xs)
held = [heldout_text("en"), heldout_text("zh")]
for name in ["model.layers.5.mlp.gate_proj", "model.layers.5.self_attn.q_proj", "model.layers.15.mlp.down_proj", "model.layers.2.mlp.down_proj", "model.layers.20.self_attn.o_proj"]:
    Xc = capture(cal, name); Xh = capture(held, name)
    W = model.get_submodule(name).weight.data.float()
    H = 2 * Xc.T @ Xc / len(Xc)
    rt = Q.rtn_quantize(W, 4, 64, symmetric=True)[0]
    out = {}
    for label, Qw in [("rtn", rt), ("gptq.01", gptq_weight(W, H, damp=0.01)), ("gptq.1", gptq_weight(W, H, damp=0.1))]:
        e = lambda X: (((Qw - W) @ X.T).norm() / (W @ X.T).norm()).item()
        out[label] = (round(e(Xc), 4), round(e(Xh), 4), round(((Qw - W).norm() / W.norm()).item(), 4))
    print(name, len(Xc), len(Xh), out, flush=True)
