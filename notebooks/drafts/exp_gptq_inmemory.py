"""Fast in-memory GPTQ (layer by layer, cached inputs) to compare calibration sets vs RTN."""
import sys, time, copy, json, random
import torch
from yi_helpers import load
from yi_helpers.corpus import heldout_text, load_conversations
from yi_helpers import quantize as Q
from yi_helpers.chat import render, default_template

torch.manual_seed(0)
model, tok = load("embedded", device="cpu", dtype="float32")
texts = {l: heldout_text(l) for l in ("en", "zh")}
def ppl(m):
    return {l: round(Q.perplexity(m, tok, t), 2) for l, t in texts.items()}

def gptq_weight(W, H, bits=4, group=64, damp=0.01, sym=True):
    W = W.clone().float(); H = H.clone(); n = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1; W[:, dead] = 0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(n)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Qw = torch.zeros_like(W); maxq = 2 ** bits - 1
    for i1 in range(0, n, 128):
        i2 = min(i1 + 128, n)
        W1 = W[:, i1:i2].clone(); Err = torch.zeros_like(W1); Hb = Hinv[i1:i2, i1:i2]
        for j in range(i2 - i1):
            i = i1 + j
            if i % group == 0:
                g = W1[:, j:j + group]
                if sym:
                    scale = (2 * g.abs().amax(1) / maxq).clamp(min=1e-12); zero = torch.full_like(scale, 2 ** (bits - 1))
                else:
                    lo = g.amin(1).clamp(max=0); hi = g.amax(1).clamp(min=0)
                    scale = ((hi - lo) / maxq).clamp(min=1e-12); zero = torch.round(-lo / scale)
            w = W1[:, j]
            q = (torch.clamp(torch.round(w / scale) + zero, 0, maxq) - zero) * scale
            Qw[:, i] = q
            err = (w - q) / Hb[j, j]
            W1[:, j:] -= err.unsqueeze(1) * Hb[j, j:].unsqueeze(0)
            Err[:, j] = err
        W[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    return Qw

class Stop(Exception):
    pass

@torch.no_grad()
def run_gptq(m, ids_list, damp=0.01, sym=True):
    layers = m.model.layers
    cached = []
    def pre(mod, args, kwargs):
        cached.append((args, kwargs)); raise Stop
    h = layers[0].register_forward_pre_hook(pre, with_kwargs=True)
    for ids in ids_list:
        try: m(ids)
        except Stop: pass
    h.remove()
    for layer in layers:
        lins = {n: mod for n, mod in layer.named_modules() if isinstance(mod, torch.nn.Linear)}
        Hs = {n: torch.zeros(mod.in_features, mod.in_features) for n, mod in lins.items()}
        cnt = {n: 0 for n in lins}
        hooks = []
        for n, mod in lins.items():
            def hook(mod, inp, out, n=n):
                x = inp[0].reshape(-1, inp[0].shape[-1]).float()
                Hs[n] += x.T @ x; cnt[n] += x.shape[0]
            hooks.append(mod.register_forward_hook(hook))
        for args, kwargs in cached:
            layer(*args, **kwargs)
        for hk in hooks: hk.remove()
        for n, mod in lins.items():
            mod.weight.copy_(gptq_weight(mod.weight.data, 2 * Hs[n] / cnt[n], damp=damp, sym=sym))
        new = []
        for args, kwargs in cached:
            out = layer(*args, **kwargs)
            out = out[0] if isinstance(out, tuple) else out
            new.append(((out,) + tuple(args[1:]), kwargs) if args else ((), {**kwargs, "hidden_states": out}))
        cached = new
    return m

TOPICS_EN = ["Explain how rain forms.", "Write a short story about a cat who learns to swim.", "How do I make a simple tomato soup?",
             "What are the benefits of regular exercise?", "Describe the history of the printing press.", "Give me tips for learning a new language.",
             "How does a computer store numbers?", "Write a poem about autumn leaves.", "What should I pack for a week of hiking?",
             "Why is the sky blue?", "Summarize the causes of the First World War.", "How do vaccines work?",
             "Write a Python function that reverses a string and explain it.", "What is the difference between weather and climate?",
             "Describe a busy market in the morning.", "How can I save money on groceries?"]
TOPICS_ZH = ["请解释一下雨是怎么形成的。", "写一个关于小猫学游泳的短故事。", "怎样做一碗简单的番茄鸡蛋汤？", "经常锻炼有什么好处？",
             "介绍一下印刷术的历史。", "学习一门新语言有什么建议？", "为什么天空是蓝色的？", "写一首关于秋天落叶的小诗。",
             "去爬山一周需要准备什么？", "疫苗是怎样起作用的？", "描述一个早晨热闹的菜市场。", "怎样在买菜时省钱？",
             "请介绍一下长江。", "什么是人工智能？", "如何养成早睡早起的习惯？", "中秋节有哪些传统习俗？"]

@torch.no_grad()
def self_generated(n_tokens=160, temperature=0.8):
    prompts = TOPICS_EN + TOPICS_ZH
    tpl = default_template(tok)
    outs = []
    tok.padding_side = "left"
    for i in range(0, len(prompts), 16):
        batch = [render([{"role": "user", "content": p}], add_generation_prompt=True, template=tpl) for p in prompts[i:i + 16]]
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        g = model.generate(**enc, max_new_tokens=n_tokens, do_sample=True, temperature=temperature, top_p=0.95, top_k=0,
                           pad_token_id=tok.pad_token_id)
        for row, p in zip(g, prompts[i:i + 16]):
            reply = tok.decode(row[enc["input_ids"].shape[1]:], skip_special_tokens=True)
            outs.append(render([{"role": "user", "content": p}, {"role": "assistant", "content": reply}], add_generation_prompt=False, template=tpl))
    return outs

print("fp32", ppl(model), flush=True)
r = copy.deepcopy(model); Q.rtn_quantize_model(r, 4, 64, symmetric=True); print("rtn4 sym", ppl(r), flush=True); del r
r = copy.deepcopy(model); Q.rtn_quantize_model(r, 4, 64, symmetric=False); print("rtn4 asym", ppl(r), flush=True); del r
gen_cache = None
for spec in sys.argv[1:]:
    src, n, damp, sym = spec.split(":"); n = int(n); damp = float(damp); sym = sym == "sym"
    if src == "hub":
        cal = Q.calibration_texts(tok, None, n, 0)
    elif src == "gen":
        if gen_cache is None:
            torch.manual_seed(0); t = time.perf_counter(); gen_cache = self_generated(); print("generated", len(gen_cache), round(time.perf_counter() - t, 1), "s", flush=True)
            print(gen_cache[0][:500]); print(gen_cache[20][:300], flush=True)
        cal = gen_cache[:n] if n < len(gen_cache) else gen_cache
    elif src == "py":
        import pydoc_data.topics as T
        allids = tok(" ".join(T.topics.values()), add_special_tokens=False, return_tensors="pt")["input_ids"]
        cal = [allids[:, i * 512:(i + 1) * 512] for i in range(n)]
    elif src == "mix":
        cal = Q.calibration_texts(tok, None, n, 0) + gen_cache
    ids = [t if torch.is_tensor(t) else tok(t, add_special_tokens=False, return_tensors="pt")["input_ids"] for t in cal]
    ntok = sum(i.shape[1] for i in ids)
    m = copy.deepcopy(model)
    t = time.perf_counter(); run_gptq(m, ids, damp, sym); s = time.perf_counter() - t
    print(spec, "samples", len(ids), "tokens", ntok, "secs", round(s, 1), ppl(m), flush=True)
    del m
