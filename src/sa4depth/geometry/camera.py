"""Pinhole cameras with an arbitrary batch shape: projection, back-projection, resize and crop.

Pixel-centre convention (see `sa4depth.geometry`): the top-left pixel's centre is ``(0, 0)``.
"""

from __future__ import annotations

import torch

_Z_MIN = 1e-3


class Camera:
    """Pinhole intrinsics stored as ``(..., 6)``: ``width, height, fx, fy, cx, cy`` (pixels).

    Example:
        >>> cam = Camera.from_K(torch.tensor([[100.0, 0, 31.5], [0, 100.0, 15.5], [0, 0, 1]]), 64, 32)
        >>> uv, valid = cam.project(torch.tensor([[0.0, 0.0, 2.0]]))
        >>> uv.tolist(), valid.tolist()
        ([[31.5, 15.5]], [True])
    """

    def __init__(self, data: torch.Tensor):
        if data.shape[-1] != 6:
            raise ValueError(f"Camera data must have shape (..., 6), got {tuple(data.shape)}")
        self._data = data

    @classmethod
    def from_K(cls, K: torch.Tensor, width: float, height: float) -> Camera:
        """Build from intrinsic matrices ``(..., 3, 3)`` and the image size in pixels."""
        size = K.new_tensor([float(width), float(height)]).expand(*K.shape[:-2], 2)
        params = torch.stack([K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]], dim=-1)
        return cls(torch.cat([size, params], dim=-1))

    @property
    def data(self) -> torch.Tensor:
        return self._data

    @property
    def size(self) -> torch.Tensor:
        """``(..., 2)`` width and height."""
        return self._data[..., :2]

    @property
    def f(self) -> torch.Tensor:
        return self._data[..., 2:4]

    @property
    def c(self) -> torch.Tensor:
        return self._data[..., 4:6]

    @property
    def shape(self) -> torch.Size:
        return self._data.shape[:-1]

    def K(self) -> torch.Tensor:
        """Intrinsic matrices ``(..., 3, 3)``."""
        fx, fy, cx, cy = self._data[..., 2:].unbind(-1)
        zero, one = torch.zeros_like(fx), torch.ones_like(fx)
        rows = [torch.stack(r, dim=-1) for r in ((fx, zero, cx), (zero, fy, cy), (zero, zero, one))]
        return torch.stack(rows, dim=-2)

    def scale(self, factor: float | tuple[float, float]) -> Camera:
        """The camera of the image resized by ``factor`` (scalar or ``(sx, sy)``).

        Keeps pixel centres consistent: ``c' = (c + 0.5) * s - 0.5``.
        """
        s = self._data.new_tensor(factor if isinstance(factor, tuple) else (factor, factor))
        return Camera(torch.cat([self.size * s, self.f * s, (self.c + 0.5) * s - 0.5], dim=-1))

    def resize_to(self, width: int, height: int) -> Camera:
        """The camera of the image resized to ``width x height`` (possibly anisotropic)."""
        w, h = self.size.unbind(-1)
        sx, sy = width / w, height / h
        s = torch.stack([sx, sy], dim=-1)
        return Camera(torch.cat([self.size * s, self.f * s, (self.c + 0.5) * s - 0.5], dim=-1))

    def crop(self, left: float, top: float, width: float, height: float) -> Camera:
        """The camera of the crop whose top-left pixel is ``(left, top)`` of this image."""
        size = self._data.new_tensor([float(width), float(height)]).expand(*self.shape, 2)
        c = self.c - self._data.new_tensor([float(left), float(top)])
        return Camera(torch.cat([size, self.f, c], dim=-1))

    def flip_horizontal(self) -> Camera:
        """The camera of the left-right mirrored image: ``cx -> W - 1 - cx``."""
        cx = self.size[..., 0] - 1 - self.c[..., 0]
        return Camera(torch.cat([self._data[..., :4], cx[..., None], self._data[..., 5:6]], dim=-1))

    def project(self, points: torch.Tensor, z_min: float = _Z_MIN) -> tuple[torch.Tensor, torch.Tensor]:
        """Project camera-frame points ``(..., N, 3)`` to pixels ``(..., N, 2)``.

        Returns the pixels and a ``(..., N)`` mask of points in front of the camera
        (``z > z_min``); pixels of masked points are finite but meaningless.
        """
        z = points[..., 2:3]
        valid = z[..., 0] > z_min
        uv = points[..., :2] / z.clamp(min=z_min) * self.f[..., None, :] + self.c[..., None, :]
        return uv, valid

    def in_image(self, uv: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
        """``(..., N)`` mask of pixels ``(..., N, 2)`` inside the image (pixel-centre extent)."""
        size = self.size[..., None, :]
        return ((uv >= -0.5 + margin) & (uv <= size - 0.5 - margin)).all(-1)

    def backproject(self, uv: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Lift pixels ``(..., N, 2)`` with z-depth ``(..., N)`` to camera points ``(..., N, 3)``."""
        xy = (uv - self.c[..., None, :]) / self.f[..., None, :]
        return torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1) * depth[..., None]

    def J_project(self, points: torch.Tensor, z_min: float = _Z_MIN) -> torch.Tensor:
        """Jacobian of `project` w.r.t. the point, ``(..., N, 2, 3)``."""
        x, y, z = points.unbind(-1)
        z = z.clamp(min=z_min)
        zero = torch.zeros_like(z)
        fx, fy = self.f[..., None, 0], self.f[..., None, 1]
        row_u = torch.stack([fx / z, zero, -fx * x / z**2], dim=-1)
        row_v = torch.stack([zero, fy / z, -fy * y / z**2], dim=-1)
        return torch.stack([row_u, row_v], dim=-2)

    def __getitem__(self, index) -> Camera:
        return Camera(self._data[index])

    def to(self, *args, **kwargs) -> Camera:
        return Camera(self._data.to(*args, **kwargs))

    def __repr__(self) -> str:
        return f"Camera(shape={tuple(self.shape)}, dtype={self._data.dtype})"
