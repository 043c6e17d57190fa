"""A small torch Llama over llama.cpp-layout tensors: a real CPU fine-tune and seed-initialised models.

Used only by scripts/lineage_models.py (tests and bench). torch is a dev-extra dependency; the
Bastion core never imports it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

Tensors = dict[str, np.ndarray]
SEQ, BATCH = 32, 2


def _rope(x: torch.Tensor, base: float) -> torch.Tensor:
    # llama.cpp's LLAMA rope ("normal" mode) rotates adjacent pairs (2i, 2i+1); GGUF Q/K rows are
    # stored for that layout by the converter.
    b, t, h, d = x.shape
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    xr = x.float().reshape(b, t, h, d // 2, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).reshape(b, t, h, d)


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(p: dict[str, torch.Tensor], meta: dict[str, object], ids: torch.Tensor) -> torch.Tensor:
    """Logits of the Llama architecture for ``ids`` (batch, seq)."""
    n_head = int(meta["llama.attention.head_count"])  # type: ignore[call-overload]
    n_kv = int(meta["llama.attention.head_count_kv"])  # type: ignore[call-overload]
    eps = float(meta["llama.attention.layer_norm_rms_epsilon"])  # type: ignore[arg-type]
    base = float(meta["llama.rope.freq_base"])  # type: ignore[arg-type]
    emb = p["token_embd.weight"]
    x = emb[ids]
    b, t, d = x.shape
    hd = d // n_head
    n_layers = sum(1 for k in p if k.endswith("ffn_up.weight"))
    for i in range(n_layers):
        L = f"blk.{i}."  # noqa: N806
        h = _rms(x, p[L + "attn_norm.weight"], eps)
        q = _rope((h @ p[L + "attn_q.weight"].T).view(b, t, n_head, hd), base)
        k = _rope((h @ p[L + "attn_k.weight"].T).view(b, t, n_kv, hd), base)
        v = (h @ p[L + "attn_v.weight"].T).view(b, t, n_kv, hd)
        k = k.repeat_interleave(n_head // n_kv, dim=2)
        v = v.repeat_interleave(n_head // n_kv, dim=2)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + a.transpose(1, 2).reshape(b, t, d) @ p[L + "attn_output.weight"].T
        h = _rms(x, p[L + "ffn_norm.weight"], eps)
        x = (
            x
            + (F.silu(h @ p[L + "ffn_gate.weight"].T) * (h @ p[L + "ffn_up.weight"].T))
            @ p[L + "ffn_down.weight"].T
        )
    x = _rms(x, p["output_norm.weight"], eps)
    out = p.get("output.weight", emb)  # SmolLM2 ties the output to the embedding
    return x @ out.T


def train(
    t: Tensors, meta: dict[str, object], text_ids: list[int], steps: int, lr: float, seed: int
) -> Tensors:
    """AdamW on next-token loss over random windows of ``text_ids``; returns the updated tensors."""
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)  # Adam moments go denormal; x86 then runs 10-50x slower
    params = {
        k: torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
        for k, v in t.items()
    }
    # The (tied) embedding stays frozen, as in most domain fine-tunes: it is a third of the parameters
    # and would dominate a CPU step. Every block matrix and norm is trained.
    params["token_embd.weight"].requires_grad_(False)
    opt = torch.optim.AdamW([v for v in params.values() if v.requires_grad], lr=lr, weight_decay=0.0)
    data = torch.tensor(text_ids, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - SEQ - 1, (BATCH,), generator=gen)
        batch = torch.stack([data[s : s + SEQ + 1] for s in starts])
        logits = forward(params, meta, batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().numpy().copy() for k, v in params.items()}


def finetune(t: Tensors, meta: dict[str, object], text_ids: list[int], steps: int) -> Tensors:
    """A real full-parameter fine-tune of the base weights (AdamW, lr 1e-4)."""
    return train(t, meta, text_ids, steps, lr=1e-4, seed=0)


def seed_model(t: Tensors, meta: dict[str, object], text_ids: list[int], seed: int, steps: int) -> Tensors:
    """A model of exactly the base's shapes, freshly initialised from ``seed`` and briefly trained."""
    rng = np.random.default_rng(seed)
    fresh = {}
    for k, v in t.items():
        if v.ndim == 1:
            fresh[k] = np.ones_like(v)  # norms start at 1, as in the Hugging Face initialiser
        else:
            fresh[k] = (rng.standard_normal(v.shape) * 0.02).astype(np.float32)  # init_range 0.02
    return train(fresh, meta, text_ids, steps, lr=1e-3, seed=seed)
