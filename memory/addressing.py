"""Addressing mechanisms that memory devices compose.

Notation (docs/NOTATION.md): B batch, N memory slots, W word width, H heads.

`content_weights` is content-based addressing as in the NTM (Graves et al. 2014, eq. 5–6) and the
DNC (Graves et al. 2016, Methods "Content-based addressing"):

    C(M, k, β)[i] = exp(β·D(k, M[i])) / Σ_j exp(β·D(k, M[j])),   D(u, v) = u·v / (|u|·|v|)

with the cosine's norms guarded by `NORM_EPS` so that zero keys and zero memory rows give a
similarity of 0 rather than 0/0, and an optional mask m (Csordás & Schmidhuber 2019) that
compares only the masked parts: D(k ⊙ m, M[i] ⊙ m).
"""

from __future__ import annotations

import torch

__all__ = ["NORM_EPS", "cosine_similarity", "content_weights"]

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
