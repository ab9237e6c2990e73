"""In-memory AWQ-style scale search (per linear, fake quant, asym grid) vs RTN asym: does it beat RTN on held-out?"""
import sys, json, copy, time
import torch
from yi_helpers import load
from yi_helpers import quantize as Q
from yi_helpers.corpus import heldout_text, calibration_conversations
model, tok = load("embedded", device="cpu", dtype="float32")
def ppl(m): return {l: round(Q.perplexity(m, tok, heldout_text(l)), 2) for l in ("en", "zh")}
n = int(sys.argv[1]) if len(sys.argv) > 1 else 32
sample_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 512
cal = Q.calibration_texts(tok, None, n, 0)
lins = {name: mod for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear) and ".layers." in name}
absmean = {k: 0 for k in lins}; count = {k: 0 for k in lins}; samples = {k: [] for k in lins}
def mk(k):
    def hook(mod, inp, out):
        x = inp[0].reshape(-1, inp[0].shape[-1]).float()
        absmean[k] = absmean[k] + x.abs().sum(0); count[k] += x.shape[0]; samples[k].append(x)
    return hook
hs = [m.register_forward_hook(mk(k)) for k, m in lins.items()]
with torch.no_grad():
    for t in cal:
        model(tok(t, add_special_tokens=False, return_tensors="pt")["input_ids"])
for h in hs: h.remove()
g = torch.Generator().manual_seed(0)
t0 = time.perf_counter()
awq = copy.deepcopy(model)
alphas = []
with torch.no_grad():
    groups = {}
    for k in lins:
        layer, _, leaf = k.rpartition(".")
        key = layer.rpartition(".")[0] + ("|attn_in" if leaf in ("q_proj", "k_proj", "v_proj") else "|mlp_in" if leaf in ("gate_proj", "up_proj") else "|" + leaf)
        groups.setdefault(key, []).append(k)
    for key, names in groups.items():
        k0 = names[0]
        X = torch.cat(samples[k0]); X = X[torch.randperm(len(X), generator=g)[:sample_tokens]]
        xm = absmean[k0] / count[k0]
        Ws = [lins[k].weight.data.float() for k in names]; refs = [X @ W.T for W in Ws]
        best = (float("inf"), None, None)
        for i in range(21):
            a = i / 20
            s = xm.clamp(min=1e-4) ** a; s = s / (s.max() * s.min()).sqrt()
            Wqs = [Q.rtn_quantize(W * s, 4, 64, symmetric=False)[0] / s for W in Ws]
            err = sum(((X @ Wq.T - ref) ** 2).sum().item() for Wq, ref in zip(Wqs, refs))
            if err < best[0]: best = (err, a, Wqs)
        for k, Wq in zip(names, best[2]):
            awq.get_submodule(k).weight.copy_(Wq)
        alphas.append(best[1])
print("n", n, "sample tokens", sample_tokens, "search s", round(time.perf_counter() - t0, 1), "mean alpha", round(sum(alphas) / len(alphas), 2), flush=True)
r = copy.deepcopy(model); Q.rtn_quantize_model(r, 4, 64, symmetric=False)
print("rtn asym", ppl(r)); print("awq-style", ppl(awq), flush=True)
