"""The diffusion UNet: time, class and cross-attention conditioning (taught in 04, 05 and 07).

Notebook 03 builds a plain UNet (``denoiser.py``); this one adds what a diffusion model needs:

* a sinusoidal embedding of the timestep t, injected into every residual block;
* residual blocks with GroupNorm;
* optional self-attention at low resolution;
* optional class conditioning: a label embedding added to the time embedding (``cond="add"``,
  notebook 05) or read through cross-attention (``cond="cross_attention"``, notebook 07, the
  way Stable Diffusion reads its text). Label ``num_classes`` is the *null* label used by
  classifier-free guidance.

Inputs of any size work: they are padded to a multiple of 2^(levels-1) and cropped back.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_image_batch, check_labels

__all__ = ["timestep_embedding", "ResBlock", "SelfAttention", "CrossAttention", "UNet", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps t (B,) -> (B, dim), as in Transformers and DDPM.

    emb[:, i] = sin(t * w_i), emb[:, dim/2 + i] = cos(t * w_i), w_i = max_period^(-i / (dim/2)).
    """
    if dim % 2:
        raise ValueError(f"embedding dim must be even, got {dim}")
    if not isinstance(t, torch.Tensor) or t.dim() != 1:
        got = f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"t must be a 1-D tensor of timesteps, shape (B,), got {got}; e.g. torch.tensor([t])")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]                                     # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)               # (B, dim)


def _groups(ch: int) -> int:
    return math.gcd(8, ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv, add the (time [+ class]) embedding, GroupNorm-SiLU-Dropout-Conv, plus a skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                    # (B, out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]          # inject the embedding per channel
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with a residual."""

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))  # (B, heads, HW, c/heads)
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class CrossAttention(nn.Module):
    """Queries from the feature map, keys and values from conditioning tokens ``context`` (B, L, D)."""

    def __init__(self, ch: int, context_dim: int, heads: int = 4):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.kv = nn.Linear(context_dim, 2 * ch)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            raise ValueError("CrossAttention needs context tokens of shape (B, L, D)")
        b, c, h, w = x.shape
        q = self.q(self.norm(x)).reshape(b, self.heads, c // self.heads, h * w).transpose(-1, -2)   # (B, heads, HW, d)
        k, v = self.kv(context).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # 2 x (B, heads, L, d)
        a = F.scaled_dot_product_attention(q, k, v)                                                    # (B, heads, HW, d)
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class _Level(nn.Module):
    """ResBlocks of one resolution, each optionally followed by attention."""

    def __init__(self, chans: list[tuple[int, int]], emb_dim: int, attn: str | None, ctx_dim: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(i, o, emb_dim, dropout) for i, o in chans)
        make = {None: lambda c: nn.Identity(), "self": lambda c: SelfAttention(c),
                "cross": lambda c: CrossAttention(c, ctx_dim)}[attn]
        self.attns = nn.ModuleList(make(o) for _, o in chans)


class UNet(nn.Module):
    """eps_theta(x_t, t[, y]): predicts the noise in ``x_t`` (B, C, H, W) at timesteps ``t`` (B,).

    Args:
        in_channels: image channels (1 for MNIST, 4 for the latent of notebook 07).
        base_channels: width of the first level; level i has ``base_channels * channel_mults[i]``.
        channel_mults: one entry per resolution (28 -> 14 -> 7 for three levels).
        num_res_blocks: residual blocks per level on the way down.
        attention: per level, whether to add attention after each block (self-attention, or
            cross-attention to the label when ``cond="cross_attention"``). Attention also sits in the middle.
        num_classes: ``None`` for an unconditional model; else labels 0..num_classes-1, with
            ``num_classes`` as the null label (classifier-free guidance).
        cond: ``"add"`` (label embedding added to the time embedding) or ``"cross_attention"``.
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 32, channel_mults: tuple[int, ...] = (1, 2, 2),
                 num_res_blocks: int = 1, attention: tuple[bool, ...] = (False, False, True),
                 num_classes: int | None = None, cond: str = "add", dropout: float = 0.0, context_tokens: int = 4):
        super().__init__()
        if len(attention) != len(channel_mults):
            raise ValueError(f"attention has {len(attention)} entries but channel_mults has {len(channel_mults)}")
        if cond not in ("add", "cross_attention"):
            raise ValueError(f"unknown cond {cond!r}; use 'add' or 'cross_attention'")
        self.in_channels, self.num_classes, self.cond = in_channels, num_classes, cond
        self.levels = len(channel_mults)
        c0 = base_channels
        emb_dim = 4 * c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.time_dim = c0
        ctx_dim = emb_dim
        self.context_tokens = context_tokens
        if num_classes is not None:
            if cond == "add":
                self.class_emb = nn.Embedding(num_classes + 1, emb_dim)          # +1: the null label
            else:  # each label becomes `context_tokens` tokens that the image attends to
                self.class_emb = nn.Embedding(num_classes + 1, context_tokens * ctx_dim)
        attn_kind = "cross" if (num_classes is not None and cond == "cross_attention") else "self"

        self.conv_in = nn.Conv2d(in_channels, c0, 3, padding=1)
        chans = [c0 * m for m in channel_mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, ch = [c0], c0
        for i, c in enumerate(chans):
            pairs = []
            for _ in range(num_res_blocks):
                pairs.append((ch, c))
                ch = c
                skips.append(ch)
            self.down.append(_Level(pairs, emb_dim, attn_kind if attention[i] else None, ctx_dim, dropout))
            if i < self.levels - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = _Level([(ch, ch), (ch, ch)], emb_dim, attn_kind, ctx_dim, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, c in reversed(list(enumerate(chans))):
            pairs = []
            for _ in range(num_res_blocks + 1):
                pairs.append((ch + skips.pop(), c))
                ch = c
            self.up.append(_Level(pairs, emb_dim, attn_kind if attention[i] else None, ctx_dim, dropout))
            if i > 0:
                self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                   nn.Conv2d(ch, ch, 3, padding=1)))
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _check(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_image_batch(x, "x", channels=self.in_channels)
        b = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(f"expected t of shape ({b},), got {tuple(t.shape)}")
        if y is not None:
            if self.num_classes is None:
                raise ValueError("this UNet is unconditional (num_classes=None); call it without y")
            y = check_labels(y, b, num_classes=self.num_classes, allow_null=True, device=x.device)
        elif self.num_classes is not None:
            y = torch.full((b,), self.num_classes, device=x.device, dtype=torch.long)   # unconditional
        return t, y

    def _run_level(self, level: _Level, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor | None,
                   skips: list[torch.Tensor] | None, push: bool) -> torch.Tensor:
        out = []
        for block, attn in zip(level.blocks, level.attns):
            if skips is not None and not push:
                h = torch.cat([h, skips.pop()], dim=1)
            h = attn(block(h, emb), ctx) if not isinstance(attn, nn.Identity) else block(h, emb)
            out.append(h)
        if push and skips is not None:
            skips.extend(out)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        t, y = self._check(x, t, y)
        b, _, H, W = x.shape
        m = 2 ** (self.levels - 1)
        ph, pw = (-H) % m, (-W) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        emb = self.time_mlp(timestep_embedding(t, self.time_dim))           # (B, 4c)
        ctx = None
        if y is not None:
            if self.cond == "add":
                emb = emb + self.class_emb(y)
            else:
                ctx = self.class_emb(y).view(b, self.context_tokens, -1)    # (B, L, D)
        h = self.conv_in(x)
        skips = [h]
        for i, level in enumerate(self.down):
            h = self._run_level(level, h, emb, ctx, skips, push=True)
            if i < self.levels - 1:
                h = self.downsample[i](h)
                skips.append(h)
        h = self._run_level(self.mid, h, emb, ctx, None, push=False)
        for i, level in enumerate(self.up):
            h = self._run_level(level, h, emb, ctx, skips, push=False)
            if i < self.levels - 1:
                h = self.upsample[i](h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[:, :, :H, :W]
