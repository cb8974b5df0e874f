"""Training a diffusion model: L_simple, the course UNet's architecture and its trainer (taught in 04, reused in 05-07).

Algorithm 1 of Ho et al. 2020::

    repeat: x_0 ~ data, t ~ U{0..T-1}, eps ~ N(0, I)
            take a gradient step on || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2

With labels and ``p_uncond > 0`` each label is replaced by the null label with probability
``p_uncond``, which trains the conditional and unconditional model jointly (notebook 05).

``prediction="v"`` trains the network to predict v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0
instead (Salimans & Ho 2022, section 4), the recipe that reached a given quality fastest on the
CPU (BENCHMARKS.md, "Training recipes"). Such a model is returned wrapped in :class:`EpsFromV`, so
every sampler and guidance function still receives a noise estimate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, RunConfig, arch_dict, load_checkpoint, load_or_train, save_checkpoint
from .data import TensorLoader
from .device import randn
from .paths import checkpoint_dir, shipped_checkpoint_dir
from .profiles import Profile
from .schedules import NoiseSchedule
from .validation import check_timesteps, extract
from .training import EMA, train
from .unet import UNet

__all__ = ["l_simple", "l_simple_v", "v_target", "EpsFromV", "as_eps_model", "LossTerm", "diffusion_loss", "UNetArch", "unet_config", "make_unet", "train_diffusion", "find_checkpoint",
           "load_trained_unet", "raw_weights_path", "load_raw_unet"]


def _predict(model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None,
             drop: torch.Tensor | None) -> torch.Tensor:
    """``model(x_t, t)``, or ``model(x_t, t, y)`` with the null label ``model.num_classes`` where ``drop``."""
    if y is None:
        return model(x_t, t)
    if drop is not None:
        y = torch.where(drop, torch.full_like(y, model.num_classes), y)            # null label where dropped
    return model(x_t, t, y)


def l_simple(model: nn.Module, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule, *,
             y: torch.Tensor | None = None, drop: torch.Tensor | None = None) -> torch.Tensor:
    """L_simple for given randomness (Ho et al. eq. 14; taught in 04, label dropout in 05).

    Args:
        model: ``eps_theta(x_t, t)`` or, with labels, ``eps_theta(x_t, t, y)``.
        x0: clean images, (B, C, H, W).
        t: one timestep per image, (B,) int64.
        eps: the noise that makes x_t, (B, C, H, W).
        schedule: the :class:`~course_utils.schedules.NoiseSchedule` whose ``alpha_bar`` makes x_t.
        y: class labels (B,) int64, or None for an unconditional model.
        drop: (B,) bool, True where the label is replaced by the null label ``model.num_classes``
            (classifier-free guidance's label dropout, 05); None keeps every label.

    Returns:
        The mean over all pixels of ``(eps - eps_theta(x_t, t[, y]))**2``, a scalar.
    """
    x_t = schedule.q_sample(x0, t, eps)                                            # (B, C, H, W), eq. 4
    return F.mse_loss(_predict(model, x_t, t, y, drop), eps)


def v_target(x0: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho 2022); ``alpha_bar_t`` broadcasts."""
    return alpha_bar_t.sqrt() * eps - (1 - alpha_bar_t).sqrt() * x0


def l_simple_v(model: nn.Module, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule, *,
               y: torch.Tensor | None = None, drop: torch.Tensor | None = None) -> torch.Tensor:
    """The v-prediction loss: mean of ``(v - v_theta(x_t, t[, y]))**2``, arguments as :func:`l_simple`.

    In terms of the noise estimate it is L_simple weighted by 1 / alpha_bar_t, since
    v - v_theta = (eps - eps_theta) / sqrt(alpha_bar_t) at a fixed x_t: more weight on the noisy,
    large-t steps (equivalently, the error of the x_0 estimate weighted by SNR + 1).
    """
    x_t = schedule.q_sample(x0, t, eps)                                            # (B, C, H, W)
    ab = schedule.alpha_bar.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))     # (B, 1, 1, 1)
    return F.mse_loss(_predict(model, x_t, t, y, drop), v_target(x0, eps, ab))


class EpsFromV(nn.Module):
    """A v-prediction network seen as a noise predictor: eps = sqrt(alpha_bar_t) v + sqrt(1 - alpha_bar_t) x_t.

    (From x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps and v = sqrt(ab) eps - sqrt(1 - ab) x_0.) Samplers, guidance
    and editing call it like any ``eps_theta(x_t, t[, y])``; ``net`` holds the weights.
    """

    def __init__(self, net: nn.Module, alpha_bar: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("alpha_bar", alpha_bar.detach().float().clone(), persistent=False)
        self.num_classes = getattr(net, "num_classes", None)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        t = check_timesteps(t, len(self.alpha_bar), batch=x.shape[0]).to(x.device)
        v = self.net(x, t) if y is None else self.net(x, t, y)                     # (B, C, H, W)
        ab = extract(self.alpha_bar, t, x.shape).to(v.dtype)                        # (B, 1, 1, 1)
        return ab.sqrt() * v + (1 - ab).sqrt() * x


def as_eps_model(net: nn.Module, task: dict) -> nn.Module:
    """``net`` itself for an eps-prediction checkpoint, wrapped in :class:`EpsFromV` for ``task["prediction"] == "v"``."""
    prediction = task.get("prediction", "eps")
    if prediction == "eps":
        return net
    if prediction != "v":
        raise ValueError(f"unknown prediction {prediction!r} in the checkpoint's task; expected 'eps' or 'v'")
    schedule = NoiseSchedule(task["schedule"], task["T"])
    return EpsFromV(net, schedule.alpha_bar).to(next(net.parameters()).device)


LossTerm = Callable[..., torch.Tensor]      # (model, x0, t, eps, schedule, *, y, drop) -> scalar, like l_simple


def diffusion_loss(model: nn.Module, x0: torch.Tensor, schedule: NoiseSchedule, *, y: torch.Tensor | None = None,
                   p_uncond: float = 0.0, generator: torch.Generator | None = None,
                   loss: LossTerm = l_simple) -> torch.Tensor:
    """Algorithm 1's loss on a minibatch: draw t, eps (and the label dropout), then ``loss`` (default :func:`l_simple`).

    The draws come from ``generator`` in a fixed order (t (B,), then eps (B, C, H, W), then the
    dropout's uniform numbers (B,) when ``y`` is given and ``p_uncond > 0``), on the CPU, so two
    ``loss`` functions given the same seed see the same randomness. ``loss`` is called as
    ``loss(model, x0, t, eps, schedule, y=y, drop=drop)``: a student's loss trains through here.
    """
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
    b, dev = x0.shape[0], x0.device
    t = torch.randint(0, schedule.T, (b,), generator=generator).to(dev)          # (B,)
    eps = randn(x0.shape, generator=generator, device=dev)                         # (B, C, H, W)
    drop = None
    if y is not None and p_uncond > 0:
        drop = (torch.rand(b, generator=generator) < p_uncond).to(dev)            # (B,) bool
    return loss(model, x0, t, eps, schedule, y=y, drop=drop)


@dataclass
class UNetArch:
    """Architecture of the course UNet: the arguments of :class:`~course_utils.unet.UNet` (``arch`` in checkpoints)."""

    in_channels: int = 1
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention: tuple[bool, ...] = (False, False, True)
    num_classes: int | None = None
    cond: str = "add"
    dropout: float = 0.0
    context_tokens: int = 4


def unet_config(profile: Profile, *, conditional: bool = False, attention: bool = True, in_channels: int = 1,
                cond: str = "add", channel_mults: tuple[int, ...] = (1, 2, 2), **overrides: Any) -> dict:
    """Architecture of the course UNet for ``profile``: :class:`UNetArch` as a JSON-able dict.

    Attention (when ``attention``) sits at the coarsest level; ``overrides`` set any other
    :class:`UNetArch` field (e.g. ``base_channels=8``).
    """
    levels = len(channel_mults)
    return arch_dict(UNetArch(**{
        "in_channels": in_channels, "base_channels": profile.width, "channel_mults": tuple(channel_mults),
        "attention": tuple(attention and i == levels - 1 for i in range(levels)),
        "num_classes": 10 if conditional else None, "cond": cond, **overrides}))


def make_unet(arch: dict) -> UNet:
    """Build a :class:`~course_utils.unet.UNet` from :func:`unet_config`'s dict."""
    a = asdict(UNetArch(**arch))
    return UNet(**{**a, "channel_mults": tuple(a["channel_mults"]), "attention": tuple(a["attention"])})


def train_diffusion(name: str, profile: Profile, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                    arch: dict | None = None, schedule_name: str = "linear", p_uncond: float = 0.0,
                    lr: float = 2e-3, lr_schedule: str | None = "cosine", epochs: int | None = None,
                    ema_decay: float = 0.999, seed: int = 0, epoch_key: str = "ddpm",
                    on_epoch_end: Callable[[int, nn.Module], dict | None] | None = None,
                    depends: dict | None = None, keep_raw: bool = False,
                    loss: LossTerm | None = None, prediction: str = "eps",
                    batch_size: int | None = None) -> tuple[nn.Module, dict, dict]:
    """Load or train the diffusion model ``name`` on ``images`` (and ``labels`` if conditional).

    Returns ``(ema_model, history, config)``: the EMA weights (what we sample with), the loss
    history, and the checkpoint's :class:`~course_utils.checkpoint.RunConfig` as a dict.
    ``epochs`` defaults to ``profile.epochs(epoch_key)``. The task (the schedule and T the
    network learns to invert, and ``p_uncond``) is part of what identifies the weights; shipped
    weights in ``data/checkpoints/<name>.pt`` are used when the profile allows and they match.

    ``depends``: fingerprints of the models this one is trained with (the latent model records
    its autoencoder). A run killed mid-way resumes after its last finished epoch.

    ``keep_raw``: when the model is trained here, also save the last raw (not averaged) weights to
    :func:`raw_weights_path` (same config), so notebook 04 can compare EMA and raw weights with
    :func:`load_raw_unet`. A loaded checkpoint keeps whatever raw file an earlier run saved.

    ``loss``: a student's loss term with :func:`l_simple`'s signature (04 and 05 train with theirs). Its
    name goes into the checkpoint's ``train`` config, and shipped weights are never used for it.

    ``batch_size`` defaults to ``profile.batch_size`` (04's ablation uses 32: more updates per CPU minute).

    ``prediction``: ``"eps"`` (Ho et al.) or ``"v"`` (the network predicts v, trained with
    :func:`l_simple_v`; part of the task, and the returned model is wrapped in :class:`EpsFromV`).
    """
    if prediction not in ("eps", "v"):
        raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
    device = images.device
    arch = arch or unet_config(profile, conditional=labels is not None)
    epochs = profile.epochs(epoch_key) if epochs is None else epochs
    batch_size = profile.batch_size if batch_size is None else batch_size
    config = RunConfig(
        model="UNet", arch=arch,
        task={"schedule": schedule_name, "T": profile.num_timesteps, "p_uncond": p_uncond,
              **({"prediction": prediction} if prediction != "eps" else {})},
        train={"lr": lr, "lr_schedule": lr_schedule, "epochs": epochs, "batch_size": batch_size,
               "n_images": int(len(images)), "ema_decay": ema_decay, "seed": seed,
               **({"loss": getattr(loss, "__name__", type(loss).__name__)} if loss is not None else {})},
        depends=depends or {})
    torch.manual_seed(seed)
    model = make_unet(arch).to(device)
    ema = EMA(model, ema_decay)
    schedule = NoiseSchedule(schedule_name, profile.num_timesteps)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(m: nn.Module, batch: tuple) -> torch.Tensor:
        xb, yb = batch
        default = l_simple_v if prediction == "v" else l_simple
        return diffusion_loss(m, xb, schedule, y=yb, p_uncond=p_uncond, generator=g, loss=loss or default)

    def train_fn(resume: Path) -> dict:
        loader = TensorLoader(images, labels, batch_size=batch_size, seed=seed)
        callback = None if on_epoch_end is None else \
            (lambda epoch, m: on_epoch_end(epoch, as_eps_model(m, config.task)))      # it samples with eps
        hist = train(model, loss_fn, loader, epochs, lr=lr, lr_schedule=lr_schedule, ema=ema, desc=name,
                     on_epoch_end=callback, resume_path=resume, resume_config=config.as_dict(), generator=g)
        if keep_raw:
            save_checkpoint(raw_weights_path(name), model, config.as_dict())
        return {"loss": hist["loss"], "epoch_loss": hist["epoch_loss"], "lr": hist["lr"]}

    history = load_or_train(name, ema.module, config, train_fn, shipped=profile.use_pretrained and loss is None)
    return as_eps_model(ema.module, config.task).eval(), history, config.as_dict()


def raw_weights_path(name: str) -> Path:
    """Where ``train_diffusion(name, ..., keep_raw=True)`` keeps the raw weights: ``outputs/checkpoints/<name>.raw.pt``."""
    return checkpoint_dir() / f"{name}.raw.pt"


def load_raw_unet(name: str, config: dict, device: torch.device | str = "cpu") -> nn.Module | None:
    """The raw (not EMA) weights of model ``name`` saved with ``keep_raw=True`` for ``config``, else ``None``.

    ``config``: the RunConfig dict :func:`train_diffusion` returned. The raw weights trained on this
    machine for the whole ``config`` come first. When the EMA weights were not trained here (they
    were loaded from ``data/checkpoints/``), the shipped raw weights of the same run
    (``data/checkpoints/<name>.raw.pt``) are matched like the EMA: on the model's identity. A
    missing or mismatched file gives ``None``. Compared with the EMA in notebook 04.
    """
    def load(path: Path, wanted: dict) -> nn.Module | None:
        if not path.exists():
            return None
        model = make_unet(config["arch"])
        try:
            load_checkpoint(path, model, wanted)
        except CheckpointError:
            return None
        return as_eps_model(model.to(device), config["task"]).eval()

    raw = load(raw_weights_path(name), config)
    if raw is not None:
        return raw
    trained_here = checkpoint_dir() / f"{name}.pt"
    if load(trained_here, config) is not None:        # the EMA is this machine's run, which kept no raw weights
        return None
    identity = {k: config[k] for k in ("model", "arch", "task", "depends") if k in config}
    return load(shipped_checkpoint_dir() / f"{name}.raw.pt", identity)


def find_checkpoint(name: str) -> Path:
    """The checkpoint of model ``name``: trained here (``outputs/checkpoints``), else shipped (``data/checkpoints``)."""
    for folder in (checkpoint_dir(), shipped_checkpoint_dir()):
        path = folder / f"{name}.pt"
        if path.exists():
            return path
    raise FileNotFoundError(
        f"no checkpoint for model {name!r} in {checkpoint_dir()} or {shipped_checkpoint_dir()}; "
        "train it by running its notebook (./course.sh run) or restore data/checkpoints/ from the repository")


def load_trained_unet(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a UNet trained by :func:`train_diffusion` from its checkpoint alone; returns (model, config).

    ``config`` is the checkpoint's RunConfig dict: ``config["task"]`` holds the ``schedule`` and
    ``T`` to sample with. A v-prediction model comes wrapped in :class:`EpsFromV`.
    """
    path = find_checkpoint(name)
    try:
        config = torch.load(path, map_location="cpu", weights_only=True)["config"]
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt ({type(e).__name__}: {e}); delete it and retrain") from e
    if not isinstance(config, dict) or config.get("model") != "UNet":
        found = config.get("model", "no model name") if isinstance(config, dict) else "no config"
        raise CheckpointError(f"checkpoint {path} does not hold a diffusion UNet (its config says {found!r}); "
                              "delete it and rerun the notebook that trains it")
    model = make_unet(config["arch"])
    load_checkpoint(path, model)
    return as_eps_model(model.to(device), config["task"]).eval(), config
