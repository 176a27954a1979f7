"""Photometric view-synthesis error (SSIM + L1) and Monodepth2's per-pixel minimum reprojection.

Auto-masking and the minimum over source frames follow Godard et al., ICCV 2019.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box_mean3(x: torch.Tensor) -> torch.Tensor:
    """3x3 box mean without padding, ``(B, C, H, W)`` -> ``(B, C, H - 2, W - 2)``.

    ``F.avg_pool2d(x, 3, 1)`` to rounding, as separable sums: measured ~10x faster forward and ~8x
    forward + backward on the CPU at 64x192 (a training step runs it about a dozen times per SSIM loss).
    """
    rows = x[..., :-2] + x[..., 1:-1] + x[..., 2:]
    return (rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]) / 9


def window_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What SSIM needs from one image: the reflection-padded image, its 3x3 box mean and variance."""
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    mu = box_mean3(padded)
    return padded, mu, box_mean3(padded * padded) - mu**2


_C1, _C2 = 0.01**2, 0.03**2


def _ssim_terms(mu_x, sigma_x, sigma_xy, mu_y, sigma_y):
    """SSIM's numerator factors ``A1, A2`` and denominator factors ``B1, B2`` from window statistics."""
    return (
        2 * mu_x * mu_y + _C1,
        2 * sigma_xy + _C2,
        mu_x**2 + mu_y**2 + _C1,
        sigma_x + sigma_y + _C2,
    )


def ssim(x: torch.Tensor, y: torch.Tensor, y_stats: tuple | None = None) -> torch.Tensor:
    """Per-pixel SSIM with a 3x3 box window and reflection padding, ``(B, C, H, W)`` -> same shape.

    The box window (not kornia's Gaussian one) is what the Monodepth2 family trains with, so
    loss values stay comparable with the literature. ``y_stats``: ``window_stats(y)`` when it is
    already known (a target compared with many warped sources).

    Example:
        >>> x = torch.rand(1, 3, 8, 8)
        >>> bool(torch.allclose(ssim(x, x), torch.ones(1, 3, 8, 8), atol=1e-4))
        True
    """
    y_pad, mu_y, sigma_y = window_stats(y) if y_stats is None else y_stats
    return _ssim_from_stats(*_pred_stats(x, y_pad, mu_y), mu_y, sigma_y)


def _pred_stats(x: torch.Tensor, y_pad: torch.Tensor, mu_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``x``'s box mean and variance and its covariance with the reflection-padded ``y``, each like ``x``."""
    x_pad, mu_x, sigma_x = window_stats(x)
    return mu_x, sigma_x, box_mean3(x_pad * y_pad) - mu_x * mu_y


def _ssim_from_stats(mu_x, sigma_x, sigma_xy, mu_y, sigma_y) -> torch.Tensor:
    """Per-pixel SSIM from the window statistics of both images."""
    a1, a2, b1, b2 = _ssim_terms(mu_x, sigma_x, sigma_xy, mu_y, sigma_y)
    return (a1 * a2) / (b1 * b2)


def _mix(s: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, alpha: float) -> torch.Tensor:
    """The photometric error from per-channel SSIM ``s``: ``alpha`` DSSIM + ``(1 - alpha)`` L1."""
    l1 = (pred - target).abs().mean(1, keepdim=True)
    dssim = ((1 - s) / 2).clamp(0, 1).mean(1, keepdim=True)
    return alpha * dssim + (1 - alpha) * l1


def _box_sum3_transpose(g: torch.Tensor) -> torch.Tensor:
    """Adjoint of `box_mean3` times 9 (a 3x3 box sum): ``(B, C, h, w)`` -> ``(B, C, h + 2, w + 2)``."""
    g = F.pad(g, (2, 2, 2, 2))
    rows = g[..., :-2] + g[..., 1:-1] + g[..., 2:]
    return rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]


def _reflect_pad1_transpose(g: torch.Tensor) -> torch.Tensor:
    """Adjoint of ``F.pad(x, (1, 1, 1, 1), mode="reflect")``: fold the border back onto rows/columns 1, -2."""
    g = g.clone()
    g[..., 2] += g[..., 0]
    g[..., -3] += g[..., -1]
    g = g[..., 1:-1]
    g[..., 2, :] += g[..., 0, :]
    g[..., -3, :] += g[..., -1, :]
    return g[..., 1:-1, :]


class _PhotometricError(torch.autograd.Function):
    """`photometric_error` against a fixed target, with a hand-written backward pass.

    Autograd would keep about a dozen image-sized intermediates per call (padded image, box means,
    the four SSIM factors, their products, the L1 difference); this keeps four (``pred`` and its
    three window statistics) and recomputes the rest, which is cheap and elementwise. A step calls it
    for every scale and source, so at 192x640, batch 12 that is ~1 GiB less peak memory
    (benchmarks/README.md, "Peak memory"). Gradients equal autograd's to rounding (tested).
    """

    @staticmethod
    def forward(ctx, pred, target, y_pad, mu_y, sigma_y, alpha):
        mu_x, sigma_x, sigma_xy = _pred_stats(pred, y_pad, mu_y)
        ctx.save_for_backward(pred, target, y_pad, mu_y, sigma_y, mu_x, sigma_x, sigma_xy)
        ctx.alpha = alpha
        return _mix(_ssim_from_stats(mu_x, sigma_x, sigma_xy, mu_y, sigma_y), pred, target, alpha)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        pred, target, y_pad, mu_y, sigma_y, mu_x, sigma_x, sigma_xy = ctx.saved_tensors
        alpha, channels = ctx.alpha, pred.shape[1]
        a1, a2, b1, b2 = _ssim_terms(mu_x, sigma_x, sigma_xy, mu_y, sigma_y)
        den = b1 * b2
        s = (a1 * a2) / den
        # dL/dS through (1 - S) / 2, the clamp (its gradient passes on [0, 1], ends included, i.e. for
        # -1 <= S <= 1) and the channel mean; q = dL/dS / (B1 B2) / 9, the 9 of the box means below.
        q = grad * ((-alpha / (18 * channels)) * ((s >= -1) & (s <= 1))) / den
        # S as a function of the window sums mu_x, E[x^2], E[xy] (sigma_x = E[x^2] - mu_x^2,
        # sigma_xy = E[xy] - mu_x mu_y), then each sum's adjoint over its 3x3 window.
        g_mu = q * (2 * mu_y * (a2 - a1) - 2 * mu_x * s * (b2 - b1))
        g_xx = -q * s * b1
        g_xy = 2 * q * a1
        x_pad = F.pad(pred, (1, 1, 1, 1), mode="reflect")
        g_pad = _box_sum3_transpose(g_mu) + 2 * x_pad * _box_sum3_transpose(g_xx)
        g_pad = g_pad + y_pad * _box_sum3_transpose(g_xy)
        g_pred = _reflect_pad1_transpose(g_pad)
        g_pred = g_pred + grad * (((1 - alpha) / channels) * torch.sign(pred - target))
        return g_pred, None, None, None, None, None


def photometric_error(
    pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85, target_stats: tuple | None = None
) -> torch.Tensor:
    """``alpha * (1 - SSIM) / 2 + (1 - alpha) * L1``, channel mean: ``(B, 3, H, W)`` -> ``(B, 1, H, W)``.

    ``target_stats``: ``window_stats(target)`` when already known. With a target that needs no
    gradient (a data image, the usual case) the memory-lean `_PhotometricError` computes it.
    """
    stats = window_stats(target) if target_stats is None else target_stats
    if not (target.requires_grad or any(t.requires_grad for t in stats)):
        return _PhotometricError.apply(pred, target, *stats, alpha)
    return _mix(ssim(pred, target, stats), pred, target, alpha)


class PhotometricTarget:
    """A target image prepared once per training step and compared with many warped sources.

    Its SSIM window statistics and, with auto-masking, the identity-reprojection error do not depend
    on depth or pose, so every scale and every loss term of a step (the depth loss and the pose net's
    own term under SA4Depth) shares them instead of recomputing them.

    Args:
        target: ``(B, 3, H, W)``, a data image (no gradient is needed through it).
        sources: the unwarped source images for auto-masking, or None for no auto-masking.
        alpha: SSIM weight of the photometric error.
    """

    def __init__(self, target: torch.Tensor, sources: list[torch.Tensor] | None = None, alpha: float = 0.85):
        self.image, self.sources, self.alpha = target, sources, alpha
        self.stats = window_stats(target)
        self._identity_error = None

    @property
    def identity_error(self) -> torch.Tensor | None:
        """Per-pixel minimum error of the unwarped sources ``(B, 1, H, W)``, None without auto-masking."""
        if self.sources is not None and self._identity_error is None:
            identity = torch.cat([self.error(s) for s in self.sources], dim=1)
            # Tiny noise breaks ties on perfectly static pixels, as in Monodepth2. Drawn in logical
            # (contiguous) order, not randn_like's memory order, so channels_last gives the same loss.
            noise = torch.randn(identity.shape, dtype=identity.dtype, device=identity.device)
            identity = identity + noise * 1e-5
            self._identity_error = identity.min(dim=1, keepdim=True)[0]
        return self._identity_error

    def error(self, pred: torch.Tensor) -> torch.Tensor:
        """Photometric error of ``pred`` ``(B, 3, H, W)`` against the target, ``(B, 1, H, W)``."""
        return photometric_error(pred, self.image, self.alpha, self.stats)


def min_reprojection_loss(
    target: torch.Tensor | PhotometricTarget,
    warped: list[torch.Tensor],
    valid: list[torch.Tensor],
    sources: list[torch.Tensor] | None = None,
    alpha: float = 0.85,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Monodepth2 loss: per-pixel minimum of the photometric error over source frames.

    Args:
        target: the target image ``(B, 3, H, W)``, or a `PhotometricTarget` prepared once per step
            (then ``sources`` and ``alpha`` are ignored: they are part of it).
        warped: each source image warped into the target view, ``(B, 3, H, W)``.
        valid: for each, ``(B, 1, H, W)`` bool mask of pixels that project inside the source.
            Invalid pixels get a large error so that another source wins the minimum.
        sources: the unwarped source images; when given, auto-masking compares against the
            identity reprojection (pixels where no warp beats "no motion" are ignored).
        alpha: SSIM weight.

    Returns:
        The scalar loss and a dict with the ``automask`` (B, 1, H, W) and the ``error`` map.
    """
    reference = target if isinstance(target, PhotometricTarget) else PhotometricTarget(target, sources, alpha)
    big = torch.full_like(valid[0], 1e3, dtype=reference.image.dtype)
    errors = [torch.where(v, reference.error(w), big) for w, v in zip(warped, valid, strict=True)]
    min_error, _ = torch.cat(errors, dim=1).min(dim=1, keepdim=True)
    info = {"error": min_error}
    if reference.identity_error is not None:
        mask = min_error < reference.identity_error
        info["automask"] = mask
        min_error = min_error * mask
    seen = min_error < 1e3
    loss = (min_error * seen).sum() / seen.sum().clamp(min=1)
    return loss, info
