#!/usr/bin/python3
"""parity_reference.py — float64 PyTorch autograd reference of the five models, written from the math in
doc/ (architectures.md, loglinear-attention.md, checkpoint-names.md) and independent of the C code: naive
recurrences and materialised masks instead of chunked kernels. It writes the fixtures that
tests/test_parity.c compares the C forward/backward and AdamW against (the role of llm.c's test_gpt2.c).

    /usr/bin/python3 tests/parity_reference.py [outdir]      (default tests/fixtures; needs python3-torch)

Each fixture tests/fixtures/parity_<case>.safetensors holds (all F32):
    param.<name>   the tiny model's weights, by the PyTorch state_dict name (tied: lm_head is not stored)
    grad.<name>    d(mean loss)/d(param), float64 autograd rounded to float32
    inputs, targets (B, T) token ids (a target -1 is ignored)
    loss (1)       the mean cross-entropy
    adamw_losses (steps + 1)  the loss before each of `steps` AdamW steps and after the last
and metadata: "config" (our config format, model section), "B", "T", "steps", "lr", "beta1", "beta2",
"eps", "weight_decay" (torch.optim.AdamW; decay on the >= 2-D weights, none on norms, biases, A_log,
dt_bias, D, L).
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_check import write_pytorch_style  # noqa: E402

torch.set_default_dtype(torch.float64)
DT = torch.float64
QK_NORM_EPS = 1e-5   # fla RMSNorm default (fla's Attention builds q_norm/k_norm without norm_eps)
L2NORM_EPS = 1e-6    # fla l2norm (GDN q, k)


# ---- building blocks (doc/architectures.md §3) ---------------------------------------------------------
def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def silu(x):
    return x * torch.sigmoid(x)


def causal_conv(x, w, b):
    """Depthwise causal conv over time: x (B, T, C), w (C, 1, K): pre[t] = b + sum_k w[k] x[t-(K-1)+k]."""
    T, C, K = x.shape[1], x.shape[2], w.shape[2]
    return F.conv1d(x.transpose(1, 2), w, b, padding=K - 1, groups=C)[..., :T].transpose(1, 2)


def mlp(x, p, pre):
    return F.linear(silu(F.linear(x, p[pre + "mlp.gate_proj.weight"])) * F.linear(x, p[pre + "mlp.up_proj.weight"]),
                    p[pre + "mlp.down_proj.weight"])


def level(t, s):
    """Log-linear level of (query t, key s): bit_length(t XOR s) (loglinear-attention.md §1.3)."""
    return (t ^ s).bit_length()


# ---- Transformer attention (architectures.md §6.3, checkpoint-names.md §1) ------------------------------
def rope(x, theta):
    """x (B, T, H, hd), rotate-half pairs (j, j + hd/2); angles in fp32 as fla's RotaryEmbedding."""
    T, hd = x.shape[1], x.shape[3]
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    cos, sin = freqs.cos().to(DT)[None, :, None, :], freqs.sin().to(DT)[None, :, None, :]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention(h, p, pre, c):
    B, T, _ = h.shape
    H, Hkv = c["num_heads"], c.get("num_kv_heads") or c["num_heads"]
    hd = c["hidden_size"] // H
    a = pre + "attn."
    q = F.linear(h, p[a + "q_proj.weight"], p.get(a + "q_proj.bias"))
    k = F.linear(h, p[a + "k_proj.weight"], p.get(a + "k_proj.bias"))
    v = F.linear(h, p[a + "v_proj.weight"], p.get(a + "v_proj.bias"))
    if c.get("qk_norm"):   # over the whole q row [H*hd] and k row [Hkv*hd]
        q = rmsnorm(q, p[a + "q_norm.weight"], QK_NORM_EPS)
        k = rmsnorm(k, p[a + "k_norm.weight"], QK_NORM_EPS)
    q, k, v = q.view(B, T, H, hd), k.view(B, T, Hkv, hd), v.view(B, T, Hkv, hd)
    q, k = rope(q, c.get("rope_theta", 10000.0)), rope(k, c.get("rope_theta", 10000.0))
    k, v = k.repeat_interleave(H // Hkv, dim=2), v.repeat_interleave(H // Hkv, dim=2)   # head h -> kv h // (H/Hkv)
    s = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(hd)
    t_idx, s_idx = torch.arange(T)[:, None], torch.arange(T)[None, :]
    visible = s_idx <= t_idx
    if c.get("window_size"):
        visible = visible & (t_idx - s_idx < c["window_size"])
    s = s.masked_fill(~visible, float("-inf"))
    o = torch.einsum("bhts,bshd->bthd", torch.softmax(s, dim=-1), v).reshape(B, T, H * hd)
    return F.linear(o, p[a + "o_proj.weight"])


# ---- Mamba-2 and log-linear Mamba-2 (architectures.md §5, §7; loglinear-attention.md §2) ---------------
def mamba2_mixer(h, p, pre, c, loglinear):
    B, T, _ = h.shape
    m = pre + "mixer."
    H, P, G, N = c["num_heads"], c["head_dim"], c["n_groups"], c["state_size"]
    din = H * P
    Cc, GN = din + 2 * G * N, G * N
    Lv = c.get("num_levels", 0) if loglinear else 0
    zx = F.linear(h, p[m + "in_proj.weight"], p.get(m + "in_proj.bias"))      # rows [z | x | B | C | dt (| dl)]
    z, xbc = zx[..., :din], zx[..., din:din + Cc]
    dt_raw, dl = zx[..., din + Cc:din + Cc + H], zx[..., din + Cc + H:]
    xbc = silu(causal_conv(xbc, p[m + "conv1d.weight"], p.get(m + "conv1d.bias")))
    x = xbc[..., :din].reshape(B, T, H, P)
    Bm = xbc[..., din:din + GN].reshape(B, T, G, N).repeat_interleave(H // G, dim=2)   # head h -> group h // (H/G)
    Cm = xbc[..., din + GN:].reshape(B, T, G, N).repeat_interleave(H // G, dim=2)
    dt = F.softplus(dt_raw + p[m + "dt_bias"])
    lo, hi = c.get("time_step_limit", [0.0, math.inf])
    if lo > 0 or hi != math.inf:
        dt = torch.clamp(dt, lo, hi)
    A = -torch.exp(p[m + "A_log"])
    if not loglinear:
        # recurrence: S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_tᵀ;  y_t = S_t C_t + D x_t
        S = torch.zeros(B, H, P, N)
        ys = []
        for t in range(T):
            S = torch.exp(dt[:, t] * A)[..., None, None] * S + \
                dt[:, t, :, None, None] * x[:, t, :, :, None] * Bm[:, t, :, None, :]
            ys.append(torch.einsum("bhpn,bhn->bhp", S, Cm[:, t]))
        y = torch.stack(ys, dim=1)
        groups = G   # mamba_ssm's fused gated norm: one group per B/C group
    else:
        # materialised: y_t = sum_{s<=t} λ_t^{ℓ(t,s)} (C_t·B_s) exp(sum_{r=s+1..t} dt_r A) dt_s x_s
        lam = F.softplus(p[m + "L"].view(1, 1, H, Lv) * dl.reshape(B, T, H, Lv))
        cs = torch.cumsum(dt * A, dim=1)                                        # (B, T, H)
        seg = cs.permute(0, 2, 1)[..., :, None] - cs.permute(0, 2, 1)[..., None, :]   # (B, H, t, s)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        decay = torch.exp(seg.masked_fill(~mask, float("-inf")))
        lv = torch.tensor([[level(t, s) if s <= t else 0 for s in range(T)] for t in range(T)])
        lam_ts = torch.gather(lam.permute(0, 2, 1, 3), 3, lv.expand(B, H, T, T))  # λ_t at level ℓ(t, s)
        cb = torch.einsum("bthn,bshn->bhts", Cm, Bm)
        y = torch.einsum("bhts,bsh,bshp->bthp", cb * decay * lam_ts, dt, x)
        groups = 1   # fla's gated norm over the whole d_inner
    y = y + p[m + "D"][None, None, :, None] * x
    u = (y.reshape(B, T, din) * silu(z)).reshape(B, T, groups, din // groups)
    w = p[m + "norm.weight"].reshape(groups, din // groups)
    g = rmsnorm(u, w, c.get("layer_norm_epsilon", 1e-5)).reshape(B, T, din)
    return F.linear(g, p[m + "out_proj.weight"], p.get(m + "out_proj.bias"))


# ---- Gated DeltaNet and log-linear GDN (architectures.md §4; loglinear-attention.md §2, §3) ------------
def gdn_mixer(h, p, pre, c, loglinear):
    B, T, _ = h.shape
    a = pre + "attn."
    H, dk = c["num_heads"], c["head_dim"]
    dv = int(dk * c.get("expand_v", 2))
    Lv = c.get("num_levels", 0) if loglinear else 0
    q = silu(causal_conv(F.linear(h, p[a + "q_proj.weight"]), p[a + "q_conv1d.weight"], None)).reshape(B, T, H, dk)
    k = silu(causal_conv(F.linear(h, p[a + "k_proj.weight"]), p[a + "k_conv1d.weight"], None)).reshape(B, T, H, dk)
    v = silu(causal_conv(F.linear(h, p[a + "v_proj.weight"]), p[a + "v_conv1d.weight"], None)).reshape(B, T, H, dv)
    beta = torch.sigmoid(F.linear(h, p[a + "b_proj.weight"]))
    g = -torch.exp(p[a + "A_log"]) * F.softplus(F.linear(h, p[a + "a_proj.weight"]) + p[a + "dt_bias"])
    q = q / torch.sqrt(q.pow(2).sum(-1, keepdim=True) + L2NORM_EPS)
    k = k / torch.sqrt(k.pow(2).sum(-1, keepdim=True) + L2NORM_EPS)
    eye = torch.eye(dk)
    outs = []
    if not loglinear:
        # S_t = e^{g_t} S_{t-1};  S_t += k_t (β_t (v_t − S_tᵀ k_t))ᵀ;  o_t = scale S_tᵀ q_t
        S = torch.zeros(B, H, dk, dv)
        for t in range(T):
            S = torch.exp(g[:, t])[..., None, None] * S
            vn = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k[:, t]))
            S = S + k[:, t, :, :, None] * vn[:, :, None, :]
            outs.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]) / math.sqrt(dk))
    else:
        # Fenwick levels (recurrent.py HState): cascade, gate every level with α(I − β k kᵀ), S[0] = β k vᵀ,
        # o_t = Σ_ℓ λ_t^ℓ S[ℓ]ᵀ q̂_t (λ/scale cancels the kernel's scale on q).
        lam = F.softplus(p[a + "L"].view(1, 1, H, Lv) * F.linear(h, p[a + "l_proj.weight"]).reshape(B, T, H, Lv))
        S = [torch.zeros(B, H, dk, dv) for _ in range(Lv)]
        count = [0] * Lv
        for t in range(T):
            for lv in range(Lv - 1):
                if count[lv] != 2 ** lv:
                    break
                S[lv + 1] = S[lv + 1] + S[lv]
                count[lv + 1] += count[lv]
                S[lv] = torch.zeros(B, H, dk, dv)
                count[lv] = 0
            kt, bt = k[:, t], beta[:, t, :, None, None]
            trans = torch.exp(g[:, t])[..., None, None] * (eye - bt * kt[..., :, None] * kt[..., None, :])
            S = [torch.einsum("bhij,bhjv->bhiv", trans, s) for s in S]
            S[0] = bt * kt[..., :, None] * v[:, t, :, None, :]
            count[0] += 1
            outs.append(sum(lam[:, t, :, lv, None] * torch.einsum("bhkv,bhk->bhv", S[lv], q[:, t])
                            for lv in range(Lv)))
    o = torch.stack(outs, dim=1)                                             # (B, T, H, dv)
    o = rmsnorm(o, p[a + "o_norm.weight"], c.get("norm_eps", 1e-6))          # per head, one weight [dv]
    if c.get("use_gate", True):
        o = o * silu(F.linear(h, p[a + "g_proj.weight"]).reshape(B, T, H, dv))
    return F.linear(o.reshape(B, T, H * dv), p[a + "o_proj.weight"])


# ---- the language model (architectures.md §2.1) --------------------------------------------------------
FAMILY = {  # prefix, mixer norm, final norm
    "transformer": ("model", "attn_norm", "norm"),
    "mamba2": ("backbone", "mixer_norm", "norm_f"),
    "loglinear_mamba2": ("backbone", "mixer_norm", "norm_f"),
    "gated_deltanet": ("model", "attn_norm", "norm"),
    "loglinear_gated_deltanet": ("model", "attn_norm", "norm"),
}


def lm_loss(p, c, inputs, targets):
    t = c["model_type"]
    prefix, norm1, normf = FAMILY[t]
    eps = c.get("layer_norm_epsilon", 1e-5) if "mamba2" in t else c.get("norm_eps", 1e-6)
    x = p[prefix + ".embeddings.weight"][inputs]
    for layer in range(c["num_hidden_layers"]):
        pre = f"{prefix}.layers.{layer}."
        hn = rmsnorm(x, p[pre + norm1 + ".weight"], eps)
        if t == "transformer":
            mix = attention(hn, p, pre, c)
        elif "mamba2" in t:
            mix = mamba2_mixer(hn, p, pre, c, t == "loglinear_mamba2")
        else:
            mix = gdn_mixer(hn, p, pre, c, t == "loglinear_gated_deltanet")
        x = x + mix
        x = x + mlp(rmsnorm(x, p[pre + "mlp_norm.weight"], eps), p, pre)
    x = rmsnorm(x, p[f"{prefix}.{normf}.weight"], eps)
    head = p[prefix + ".embeddings.weight"] if c.get("tie_word_embeddings") else p["lm_head.weight"]
    logits = x @ head.T
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)


# ---- parameters: names and shapes as doc/checkpoint-names.md, tiny random values --------------------------
def param_shapes(c):
    t, d, V, I = c["model_type"], c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    prefix, norm1, normf = FAMILY[t]
    out = [(prefix + ".embeddings.weight", (V, d))]
    H = c["num_heads"]
    for layer in range(c["num_hidden_layers"]):
        pre = f"{prefix}.layers.{layer}."
        out.append((pre + norm1 + ".weight", (d,)))
        if t == "transformer":
            Hkv, hd = c.get("num_kv_heads") or H, d // H
            a = pre + "attn."
            for n, rows in (("q", H * hd), ("k", Hkv * hd), ("v", Hkv * hd)):
                out.append((a + n + "_proj.weight", (rows, d)))
                if c.get("qkv_bias"):
                    out.append((a + n + "_proj.bias", (rows,)))
            out.append((a + "o_proj.weight", (d, H * hd)))
            if c.get("qk_norm"):
                out += [(a + "q_norm.weight", (H * hd,)), (a + "k_norm.weight", (Hkv * hd,))]
        elif "mamba2" in t:
            m = pre + "mixer."
            P, G, N, K = c["head_dim"], c["n_groups"], c["state_size"], c["conv_kernel"]
            din, Lv = H * P, c.get("num_levels", 0) if t == "loglinear_mamba2" else 0
            Cc = din + 2 * G * N
            R = din + Cc + H + H * Lv
            out += [(m + "dt_bias", (H,)), (m + "A_log", (H,)), (m + "D", (H,)), (m + "conv1d.weight", (Cc, 1, K)),
                    (m + "in_proj.weight", (R, d)), (m + "norm.weight", (din,)), (m + "out_proj.weight", (d, din))]
            if Lv:
                out.append((m + "L", (H, Lv)))
            if c.get("use_conv_bias", True):
                out.append((m + "conv1d.bias", (Cc,)))
            if c.get("use_bias"):
                out += [(m + "in_proj.bias", (R,)), (m + "out_proj.bias", (d,))]
        else:
            a = pre + "attn."
            dk, K = c["head_dim"], c["conv_size"]
            dv = int(dk * c.get("expand_v", 2))
            out += [(a + "A_log", (H,)), (a + "dt_bias", (H,)), (a + "q_proj.weight", (H * dk, d)),
                    (a + "k_proj.weight", (H * dk, d)), (a + "v_proj.weight", (H * dv, d)), (a + "a_proj.weight", (H, d)),
                    (a + "b_proj.weight", (H, d)), (a + "q_conv1d.weight", (H * dk, 1, K)),
                    (a + "k_conv1d.weight", (H * dk, 1, K)), (a + "v_conv1d.weight", (H * dv, 1, K)),
                    (a + "o_norm.weight", (dv,)), (a + "o_proj.weight", (d, H * dv))]
            if c.get("use_gate", True):
                out.append((a + "g_proj.weight", (H * dv, d)))
            if t == "loglinear_gated_deltanet":
                Lv = c["num_levels"]
                out += [(a + "L", (H, Lv)), (a + "l_proj.weight", (H * Lv, d))]
        out.append((pre + "mlp_norm.weight", (d,)))
        out += [(pre + "mlp.gate_proj.weight", (I, d)), (pre + "mlp.up_proj.weight", (I, d)),
                (pre + "mlp.down_proj.weight", (d, I))]
    out.append((f"{prefix}.{normf}.weight", (d,)))
    if not c.get("tie_word_embeddings"):
        out.append(("lm_head.weight", (V, d)))
    return out


def decays(name, shape):
    """torch AdamW groups as the C trainer's DECAY_MATRICES: linear/conv/embedding weights."""
    return len(shape) >= 2 and name.endswith(".weight")


def init_params(c, gen, std=0.2):
    """Random float32-representable values: matrices N(0, std²); per-head/per-channel parameters around
    their usual values (norms 1 ± 0.2, D 1 ± 0.2, L 1 ± 0.2, A_log = log(1..H) ± 0.2, dt_bias
    softplus⁻¹(0.05) ± 0.5 (+2 under time_step_limit, so that some dt are clamped)), biases N(0, 0.3²)."""
    p = {}
    for name, shape in param_shapes(c):
        r = torch.randn(shape, generator=gen)
        if decays(name, shape):
            v = std * r
        elif name.endswith("A_log"):
            v = torch.log(torch.arange(1, shape[0] + 1, dtype=DT)) + 0.2 * r
        elif name.endswith("dt_bias"):
            v = math.log(math.expm1(0.05)) + 0.5 * r + (2.0 if "time_step_limit" in c else 0.0)
        elif name.endswith(".bias"):
            v = 0.3 * r
        else:   # norm weights, D, L
            v = 1.0 + 0.2 * r
        p[name] = v.to(torch.float32).to(DT).requires_grad_(True)
    return p


def make_fixture(path, case, B, T, steps=3, lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, wd=0.1):
    c = dict(case)
    written = dict(case)   # the config as the C side reads it
    if "mamba2" in c["model_type"]:
        c["intermediate_size"] = 256   # Mamba2MLP hard-codes 256*ceil(int(8d/3)/256); not a key there
    gen = torch.Generator().manual_seed(1234)
    p = init_params(c, gen)
    V = c["vocab_size"]
    inputs = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)
    targets[0, 3] = -1
    tensors = {"param." + n: v.detach().to(torch.float32) for n, v in p.items()}
    loss = lm_loss(p, c, inputs, targets)
    loss.backward()
    for n, v in p.items():
        tensors["grad." + n] = v.grad.to(torch.float32)
    fp32_floor, fp32_name = torch_fp32_error(p, c, inputs, targets)
    tensors["inputs"] = inputs.to(torch.float32)
    tensors["targets"] = targets.to(torch.float32)
    tensors["loss"] = loss.detach().reshape(1).to(torch.float32)
    # AdamW from the same weights
    shapes = dict(param_shapes(c))
    groups = [{"params": [v for n, v in p.items() if decays(n, shapes[n])], "weight_decay": wd},
              {"params": [v for n, v in p.items() if not decays(n, shapes[n])], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), eps=eps)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        lv = lm_loss(p, c, inputs, targets)
        lv.backward()
        losses.append(lv.item())
        opt.step()
    losses.append(lm_loss(p, c, inputs, targets).item())
    tensors["adamw_losses"] = torch.tensor(losses, dtype=torch.float32)
    meta = {"config": json.dumps({"model": written}), "B": str(B), "T": str(T), "steps": str(steps), "lr": repr(lr),
            "beta1": repr(beta1), "beta2": repr(beta2), "eps": repr(eps), "weight_decay": repr(wd),
            "torch_fp32_worst": f"{fp32_floor:.3e} {fp32_name}"}
    write_pytorch_style(path, tensors, meta)
    print(f"{path}: loss {loss.item():.6f}, AdamW losses {' '.join(f'{x:.6f}' for x in losses)}; "
          f"torch fp32 vs fp64 worst gradient error {fp32_floor:.2e} ({fp32_name})")


def torch_fp32_error(p, c, inputs, targets):
    """The same model in float32 PyTorch against the float64 gradients (p[...].grad): the worst per-tensor
    relative L2 error, i.e. how well float32 can do on this case (the C code is held to 1e-5)."""
    global DT
    torch.set_default_dtype(torch.float32)
    DT = torch.float32
    try:
        p32 = {n: v.detach().float().requires_grad_(True) for n, v in p.items()}
        lm_loss(p32, c, inputs, targets).backward()
        return max((((p32[n].grad.double() - v.grad).norm() / v.grad.norm()).item(), n) for n, v in p.items())
    finally:
        torch.set_default_dtype(torch.float64)
        DT = torch.float64


BASE = {"vocab_size": 23, "hidden_size": 16, "num_hidden_layers": 2, "max_position_embeddings": 64,
        "initializer_range": 0.02, "tie_word_embeddings": False}
MAMBA = {**BASE, "num_heads": 4, "head_dim": 8, "expand": 2, "state_size": 8, "n_groups": 2, "conv_kernel": 4,
         "chunk_size": 4, "rescale_prenorm_residual": False}
GDN = {**BASE, "num_heads": 2, "head_dim": 8, "expand_v": 2, "conv_size": 4, "chunk_size": 4, "intermediate_size": 24}
CASES = {
    # name: (config, B, T); T = 11 is not a multiple of the chunk (4)
    "transformer_gqa": ({**BASE, "model_type": "transformer", "num_heads": 4, "num_kv_heads": 2,
                         "intermediate_size": 24}, 2, 11),
    "transformer_options": ({**BASE, "model_type": "transformer", "num_heads": 4, "num_kv_heads": 2,
                             "intermediate_size": 24, "tie_word_embeddings": True, "qk_norm": True, "qkv_bias": True,
                             "window_size": 4}, 2, 11),
    "mamba2_groups": ({**MAMBA, "model_type": "mamba2"}, 2, 11),
    "mamba2_options": ({**MAMBA, "model_type": "mamba2", "use_bias": True, "use_conv_bias": False,
                        "time_step_limit": [0.4, 1.5], "tie_word_embeddings": True}, 2, 11),
    "loglinear_mamba2_groups": ({**MAMBA, "model_type": "loglinear_mamba2", "num_levels": 7}, 2, 11),
    "loglinear_mamba2_options": ({**MAMBA, "model_type": "loglinear_mamba2", "num_levels": 7, "use_bias": True,
                                  "time_step_limit": [0.4, 1.5]}, 2, 19),
    "gated_deltanet": ({**GDN, "model_type": "gated_deltanet"}, 2, 11),
    "gated_deltanet_no_gate": ({**GDN, "model_type": "gated_deltanet", "use_gate": False,
                                "tie_word_embeddings": True}, 1, 13),
    "loglinear_gated_deltanet": ({**GDN, "model_type": "loglinear_gated_deltanet", "num_levels": 7}, 2, 19),
}


def main(argv):
    outdir = argv[0] if argv else os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    os.makedirs(outdir, exist_ok=True)
    for name, (case, B, T) in CASES.items():
        make_fixture(os.path.join(outdir, f"parity_{name}.safetensors"), case, B, T)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
