"""Rigid transforms in SE(3) as one tensor with an arbitrary batch shape.

See `sa4depth.geometry` for the direction convention (``T_a_b`` maps frame-b points into frame a).
"""

from __future__ import annotations

import torch


class Pose:
    """A batch of rigid transforms ``T_a_b`` stored as ``(..., 12)``: row-major R (9) then t (3).

    Example:
        >>> T = Pose.from_aa(torch.tensor([0.0, 0.0, 0.1]), torch.tensor([1.0, 0.0, 0.0]))
        >>> X = torch.tensor([[0.0, 0.0, 5.0]])
        >>> torch.allclose((T.inv() @ T) * X, X, atol=1e-6)
        True
    """

    def __init__(self, data: torch.Tensor):
        if data.shape[-1] != 12:
            raise ValueError(f"Pose data must have shape (..., 12), got {tuple(data.shape)}")
        self._data = data

    @classmethod
    def from_Rt(cls, R: torch.Tensor, t: torch.Tensor) -> Pose:
        """Build from rotations ``(..., 3, 3)`` and translations ``(..., 3)``."""
        R, t = torch.broadcast_tensors(R, t[..., None])
        return cls(torch.cat([R.flatten(-2), t[..., 0]], dim=-1))

    @classmethod
    def from_4x4mat(cls, T: torch.Tensor) -> Pose:
        """Build from homogeneous matrices ``(..., 4, 4)`` or ``(..., 3, 4)``."""
        return cls.from_Rt(T[..., :3, :3], T[..., :3, 3])

    @classmethod
    def from_aa(cls, aa: torch.Tensor, t: torch.Tensor) -> Pose:
        """Build from axis-angle ``(..., 3)`` (radians) and translation ``(..., 3)``.

        Rodrigues' formula ``R = I + a K + b K^2``, ``K = [aa]_x``, with ``a = sin(theta) / theta`` and
        ``b = (1 - cos(theta)) / theta^2`` written as ``2 sin^2(theta / 2) / theta^2`` (no cancellation
        in float32), and their Taylor series below ``theta = 1e-3``, so ``aa = 0`` has exact gradients.
        Equal to kornia's ``So3.exp`` to rounding in a quarter of its time (forward + backward, 8 poses):
        the LM calls it once per step, and it was a measurable part of the refinement's cost.
        """
        theta2 = (aa * aa).sum(-1, keepdim=True)
        small = theta2 < 1e-6
        # where() on theta^2 (not on theta) so the unused branch never sees sqrt'(0) = inf.
        half = torch.where(small, torch.ones_like(theta2), theta2).sqrt() / 2
        a = torch.where(small, 1 - theta2 / 6, torch.sin(2 * half) / (2 * half))
        b = torch.where(small, 0.5 - theta2 / 24, 0.5 * (torch.sin(half) / half) ** 2)
        x, y, z = aa.unbind(-1)
        zero = torch.zeros_like(x)
        K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))
        eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
        return cls.from_Rt(eye + a[..., None] * K + b[..., None] * (K @ K), t)

    @classmethod
    def identity(cls, *batch_shape: int, device=None, dtype=torch.float32) -> Pose:
        eye = torch.eye(3, device=device, dtype=dtype).expand(*batch_shape, 3, 3)
        return cls.from_Rt(eye, torch.zeros(*batch_shape, 3, device=device, dtype=dtype))

    @property
    def data(self) -> torch.Tensor:
        return self._data

    @property
    def R(self) -> torch.Tensor:
        """Rotation ``(..., 3, 3)``."""
        return self._data[..., :9].unflatten(-1, (3, 3))

    @property
    def t(self) -> torch.Tensor:
        """Translation ``(..., 3)``."""
        return self._data[..., 9:]

    @property
    def shape(self) -> torch.Size:
        return self._data.shape[:-1]

    @property
    def device(self) -> torch.device:
        return self._data.device

    @property
    def dtype(self) -> torch.dtype:
        return self._data.dtype

    def matrix(self) -> torch.Tensor:
        """Homogeneous matrices ``(..., 4, 4)``."""
        top = torch.cat([self.R, self.t[..., None]], dim=-1)
        bottom = self._data.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(*self.shape, 1, 4)
        return torch.cat([top, bottom], dim=-2)

    def inv(self) -> Pose:
        """``T_a_b -> T_b_a``."""
        R_inv = self.R.transpose(-1, -2)
        return Pose.from_Rt(R_inv, -(R_inv @ self.t[..., None])[..., 0])

    def __matmul__(self, other: Pose) -> Pose:
        """Compose: ``T_a_b @ T_b_c == T_a_c``."""
        R = self.R @ other.R
        t = (self.R @ other.t[..., None])[..., 0] + self.t
        return Pose.from_Rt(R, t)

    def transform(self, points: torch.Tensor) -> torch.Tensor:
        """Map points ``(..., N, 3)`` from frame b into frame a (batch dims broadcast)."""
        return points @ self.R.transpose(-1, -2) + self.t[..., None, :]

    def __mul__(self, points: torch.Tensor) -> torch.Tensor:
        return self.transform(points)

    def magnitude(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation angle in degrees and translation norm, each ``(...)``."""
        cos = ((self.R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
        return torch.rad2deg(torch.acos(cos)), self.t.norm(dim=-1)

    def __getitem__(self, index) -> Pose:
        return Pose(self._data[index])

    def detach(self) -> Pose:
        return Pose(self._data.detach())

    def to(self, *args, **kwargs) -> Pose:
        return Pose(self._data.to(*args, **kwargs))

    def __repr__(self) -> str:
        return f"Pose(shape={tuple(self.shape)}, dtype={self.dtype})"
