"""Addressing mechanisms that memory devices compose.

Notation (docs/NOTATION.md): B batch, N memory slots, W word width, H heads.

`content_weights` is content-based addressing as in the NTM (Graves et al. 2014, eq. 5–6) and the
DNC (Graves et al. 2016, Methods "Content-based addressing"):

    C(M, k, β)[i] = exp(β·D(k, M[i])) / Σ_j exp(β·D(k, M[j])),   D(u, v) = u·v / (|u|·|v|)

with the cosine's norms guarded by `NORM_EPS` so that zero keys and zero memory rows give a
similarity of 0 rather than 0/0, and an optional mask m (Csordás & Schmidhuber 2019) that
compares only the masked parts: D(k ⊙ m, M[i] ⊙ m).

The NTM's location addressing (Graves et al. 2014, §3.3.2) refines a weighting in three steps,
each a function here:

    interpolate  w^g = g·w^c + (1 − g)·w_{t−1}                          (eq. 7)
    shift        w̃(i) = Σ_j w^g(j)·s(i − j),  indices mod N             (eq. 8)
    sharpen      w(i) = w̃(i)^γ / Σ_j w̃(j)^γ                            (eq. 9)

A shift weighting s has S = 2·r + 1 entries for the offsets −r … +r (s[..., r] is offset 0);
offset +1 moves the mass at slot i to slot i + 1.
"""

from __future__ import annotations

import torch

__all__ = ["NORM_EPS", "content_weights", "cosine_similarity", "interpolate", "shift", "sharpen"]

# Added under the square root of every norm: a zero key or a zero memory row has norm ~1e-3,
# similarity 0, and a finite gradient (the NaN that the peers' ports hit on zero memory).
NORM_EPS = 1e-6


def cosine_similarity(memory: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """D(k_h, M[i]) for every head h and slot i.

    Args:
        memory: (B, N, W).
        keys: (B, H, W).
    Returns:
        (B, H, N).
    """
    dot = torch.einsum("bhw,bnw->bhn", keys, memory)  # (B, H, N)
    key_norm = torch.sqrt((keys * keys).sum(-1) + NORM_EPS)  # (B, H)
    mem_norm = torch.sqrt((memory * memory).sum(-1) + NORM_EPS)  # (B, N)
    return dot / (key_norm.unsqueeze(-1) * mem_norm.unsqueeze(1))  # (B, H, N)


def content_weights(
    memory: torch.Tensor,
    keys: torch.Tensor,
    strengths: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """C(M, k, β): a softmax over slots of the strength-scaled cosine similarity.

    Args:
        memory: (B, N, W) M.
        keys: (B, H, W) k, one per head.
        strengths: (B, H) β ≥ 0 (≥ 1 from `oneplus`); large β approaches argmax.
        mask: (B, H, W) in [0, 1] or None: compare only the masked part of key and rows.
    Returns:
        (B, H, N) weightings, each on the simplex.
    """
    if mask is None:
        similarity = cosine_similarity(memory, keys)  # (B, H, N)
    else:
        # (B, H, N): each head sees memory through its own mask
        masked_memory = memory.unsqueeze(1) * mask.unsqueeze(2)  # (B, H, N, W)
        masked_keys = keys * mask  # (B, H, W)
        dot = torch.einsum("bhw,bhnw->bhn", masked_keys, masked_memory)
        key_norm = torch.sqrt((masked_keys * masked_keys).sum(-1) + NORM_EPS)  # (B, H)
        mem_norm = torch.sqrt((masked_memory * masked_memory).sum(-1) + NORM_EPS)  # (B, H, N)
        similarity = dot / (key_norm.unsqueeze(-1) * mem_norm)
    # softmax is shift-invariant, so a huge β only saturates it: no overflow (max is subtracted)
    return torch.softmax(strengths.unsqueeze(-1) * similarity, dim=-1)  # (B, H, N)


def interpolate(content: torch.Tensor, previous: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """w^g = g·w^c + (1 − g)·w_{t−1} (eq. 7): g = 1 takes the content weighting, g = 0 keeps the
    previous one (pure location addressing).

    Args:
        content: (B, H, N) w^c.
        previous: (B, H, N) w_{t−1}.
        gate: (B, H) g in [0, 1].
    Returns:
        (B, H, N), on the simplex when both weightings are.
    """
    g = gate.unsqueeze(-1)  # (B, H, 1)
    return g * content + (1 - g) * previous


def shift(weights: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Circular convolution w̃(i) = Σ_d s(d)·w(i − d mod N) over the offsets d = −r … +r (eq. 8).

    One gather for the whole batch: column d of an (N, S) index table holds (i − d) mod N. Where
    S > N, several offsets name the same rotation and their weights add, as eq. 8 with s read
    modulo N says.

    Args:
        weights: (B, H, N) w^g.
        shifts: (B, H, S) s, S = 2·r + 1 odd, s[..., r] the weight of offset 0.
    Returns:
        (B, H, N); a one-hot s at offset d rotates w by d exactly (`torch.roll(w, d, -1)`).
    """
    n, size = weights.shape[-1], shifts.shape[-1]
    if size % 2 != 1:
        raise ValueError(f"shift: shift weighting has {size} entries; expected an odd 2·r + 1")
    r = size // 2
    offsets = torch.arange(-r, r + 1, device=weights.device)  # (S,)
    source = (torch.arange(n, device=weights.device).unsqueeze(1) - offsets) % n  # (N, S): i − d mod N
    rolled = weights[..., source]  # (B, H, N, S): rolled[..., i, d] = w(i − d)
    return (rolled * shifts.unsqueeze(-2)).sum(-1)  # (B, H, N)


def sharpen(weights: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """w(i) = w̃(i)^γ / Σ_j w̃(j)^γ (eq. 9), computed as softmax(γ · log w̃).

    The log form is the same function, but the softmax subtracts the largest term, so a huge γ
    (where every w̃(j)^γ underflows and the plain quotient is 0/0) gives the argmax instead of NaN.
    Zero entries (a one-hot w̃, a saturated shift) are guarded: log w̃ is taken of
    max(w̃, tiny), tiny the dtype's smallest normal number, because log 0 = −∞ turns the
    softmax's backward into 0·∞ = NaN, and a subnormal w̃ would overflow 1/w̃ in log's backward.
    An entry below tiny keeps weight at most (N·tiny)^γ (w̃ sums to 1, so its largest entry is
    ≥ 1/N) and gets no gradient; every other entry's gradient γ·w(i)/w̃(i)·(…) stays finite
    because w(i)/w̃(i) ≤ (w̃(i)/max w̃)^(γ−1) / max w̃ ≤ N for γ ≥ 1 (why γ comes from oneplus).

    Args:
        weights: (B, H, N) w̃, nonnegative, each row summing to 1.
        gamma: (B, H) γ ≥ 1.
    Returns:
        (B, H, N) on the simplex; a one-hot w̃ stays one-hot to within (tiny)^γ.
    """
    tiny = torch.finfo(weights.dtype).tiny
    log_w = torch.log(weights.clamp_min(tiny))  # (B, H, N), finite
    return torch.softmax(gamma.unsqueeze(-1) * log_w, dim=-1)  # (B, H, N)
