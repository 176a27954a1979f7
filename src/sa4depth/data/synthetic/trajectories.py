"""Camera paths through the synthetic scenes: a car's drive along a street, a walk around a room.

`_driving` and `_indoor` give a scene and its ``(N, 4, 4)`` ``T_world_cam`` poses at a speed and height.
"""

from __future__ import annotations

import numpy as np

from sa4depth.data.synthetic.scenes import _driving_scene, _indoor_scene

#: Mean camera motion per frame (metres) at speed factor 1. Driving: 0.75 m, three quarters of KITTI's
#: ~1 m per frame at the same normalised focal length, so image motion is KITTI-like relative to the
#: image width. At 0.25 m (before 2026-12) the median motion at 64 x 192 was 0.6-1.5 px and a third of
#: the pixels moved under 0.5 px: depth learned ~2x slower on the curve (docs/design.md, "The CPU recipe").
BASE_SPEED = {"driving": 0.75, "indoor": 0.06}
#: Bumped whenever the same spec renders different frames: 2 (2026-12) added speed changes within a
#: sequence and lane changes. `meta.yaml` records it; benchmarks refuse a folder of another version.
WORLD_VERSION = 2
CAMERA_HEIGHT_RANGE = {"driving": (1.4, 1.8), "indoor": (1.2, 1.6)}


def _rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """``R_world_cam (N, 3, 3)``: yaw about world y (towards +x), pitch (positive looks down), then roll."""
    cy, sy, cp, sp, cr, sr = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)

    def matrix(rows):
        return np.stack([np.stack(row, -1) for row in rows], 1)

    R_yaw = matrix([(cy, zero, sy), (zero, one, zero), (-sy, zero, cy)])
    R_pitch = matrix([(one, zero, zero), (zero, cp, sp), (zero, -sp, cp)])
    R_roll = matrix([(cr, -sr, zero), (sr, cr, zero), (zero, zero, one)])
    return R_yaw @ R_pitch @ R_roll


def _wobble(rng: np.random.Generator, frames: int, amplitude: float) -> np.ndarray:
    """Smooth zero-mean noise (two sinusoids with random periods and phases), ``(frames,)``."""
    i = np.arange(frames)
    out = np.zeros(frames)
    for period in (rng.uniform(8, 20), rng.uniform(25, 60)):
        out += amplitude / 2 * np.sin(2 * np.pi * i / period + rng.uniform(0, 2 * np.pi))
    return out


def _speed_profile(rng: np.random.Generator, frames: int, speed: float) -> np.ndarray:
    """Metres travelled between consecutive frames, ``(frames - 1,)``, with mean ``speed``.

    The speed changes within a sequence as a car's does in town: knots every 6-16 frames with a target
    speed log-uniform in 0.4x-1.8x the mean, one knot in ten a near-stop (0.1x), and constant acceleration
    or braking between knots. Before world version 2 every sequence kept one speed (+-8 %), and the pose net
    learned each street's speed from its look instead of from the motion (docs/design.md).
    """
    knots = [0]
    while knots[-1] < frames - 2:
        knots.append(knots[-1] + int(rng.integers(6, 17)))
    targets = np.exp(rng.uniform(np.log(0.4), np.log(1.8), len(knots)))
    targets[rng.random(len(knots)) < 0.1] = 0.1
    steps = np.interp(np.arange(frames - 1), knots, targets)
    return steps * (speed / steps.mean())


def _arc_steps(rng: np.random.Generator, frames: int, speed: float) -> np.ndarray:
    """Distance travelled at each frame, ``(frames,)`` from 0 (`_speed_profile` accumulated)."""
    return np.concatenate([[0.0], np.cumsum(_speed_profile(rng, frames, speed))])


def _lane_changes(rng: np.random.Generator, z: np.ndarray, lane_w: float) -> np.ndarray:
    """Lateral offset ``(len(z),)`` of a car changing lane every 15-50 m, each change over 20-40 m.

    A change is a cosine ramp of one lane width to the left and the next one back, so the heading turns by
    up to ~9 deg, about 0.7 deg per frame at 0.75 m per frame: KITTI-like yaw that a pose net must see (a
    gentle weave alone rotated the camera by 0.3 deg per frame, mostly pitch and roll).
    """
    offset = np.zeros_like(z)
    start, delta = rng.uniform(0.0, 30.0), -lane_w
    while start < z[-1]:
        length = rng.uniform(20.0, 40.0)
        offset += delta * (1 - np.cos(np.pi * np.clip((z - start) / length, 0.0, 1.0))) / 2
        start, delta = start + length + rng.uniform(15.0, 50.0), -delta
    return offset


def _poses(position: np.ndarray, yaw, pitch, roll) -> np.ndarray:
    T = np.tile(np.eye(4), (len(position), 1, 1))
    T[:, :3, :3] = _rotation(yaw, pitch, roll)
    T[:, :3, 3] = position
    return T


def _driving(rng: np.random.Generator, frames: int, speed: float, camera_height: float):
    """A drive along a straight street, weaving gently and changing lanes; returns (scene, T_world_cam)."""
    lanes = int(rng.integers(1, 3))
    lane_w, parking = rng.uniform(3.0, 3.6), 2.3
    street = {"lanes": lanes, "lane_w": lane_w, "parking": parking, "road_half": parking + lanes * lane_w}
    lane_x = street["road_half"] - parking - lane_w / 2
    weave = [
        (rng.uniform(0.15, 0.5), rng.uniform(40, 90), rng.uniform(0, 6.3)),
        (rng.uniform(0.03, 0.12), rng.uniform(15, 30), rng.uniform(0, 6.3)),
    ]
    arc = _arc_steps(rng, frames, speed)
    z_dense = np.linspace(0.0, arc[-1] * 1.05 + 1.0, 20001)
    x_dense = lane_x + sum(a * np.sin(2 * np.pi * z_dense / p + ph) for a, p, ph in weave)
    x_dense += _lane_changes(rng, z_dense, lane_w)
    s_dense = np.concatenate([[0], np.cumsum(np.hypot(np.diff(z_dense), np.diff(x_dense)))])
    z = np.interp(arc, s_dense, z_dense)
    x = np.interp(z, z_dense, x_dense)
    slope = np.interp(z, z_dense, np.gradient(x_dense, z_dense))
    y = -camera_height + _wobble(rng, frames, 0.02)
    pitch = np.deg2rad(rng.uniform(-1.0, 2.0) + _wobble(rng, frames, 0.6))
    roll = np.deg2rad(_wobble(rng, frames, 0.5))
    T = _poses(np.stack([x, y, z], -1), np.arctan(slope), pitch, roll)
    return _driving_scene(rng, street, z_last=float(z[-1])), T


def _indoor(rng: np.random.Generator, frames: int, speed: float, camera_height: float):
    """A walk around an ellipse inside a room, looking along the path and a little inwards."""
    half_w, half_d = rng.uniform(3.0, 4.5), rng.uniform(3.5, 5.5)
    a = half_w - 1.7
    b = min(half_d - 1.7, 1.6 * a)
    room = {"half_w": half_w, "half_d": half_d, "height": rng.uniform(2.5, 3.2), "path_a": a, "path_b": b}
    arc = _arc_steps(rng, frames, speed)
    direction = 1 if rng.random() < 0.5 else -1
    theta0 = rng.uniform(0, 2 * np.pi)
    perimeter = np.pi * (3 * (a + b) - np.sqrt((3 * a + b) * (a + 3 * b)))
    theta_dense = theta0 + direction * np.linspace(0, 2 * np.pi * (arc[-1] / perimeter + 1.1), 40001)
    xz = np.stack([a * np.cos(theta_dense), b * np.sin(theta_dense)], -1)
    s_dense = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(xz, axis=0), axis=-1))])
    theta = np.interp(arc, s_dense, theta_dense)
    x, z = a * np.cos(theta), b * np.sin(theta)
    tangent_yaw = np.arctan2(-a * np.sin(theta) * direction, b * np.cos(theta) * direction)
    centre_yaw = np.arctan2(-x, -z)
    inward = np.angle(np.exp(1j * (centre_yaw - tangent_yaw)))
    yaw = tangent_yaw + rng.uniform(0.1, 0.3) * inward + np.deg2rad(_wobble(rng, frames, 3.0))
    pitch = np.deg2rad(rng.uniform(3.0, 10.0) + _wobble(rng, frames, 1.0))
    roll = np.deg2rad(_wobble(rng, frames, 1.0))
    y = -camera_height + _wobble(rng, frames, 0.02)
    T = _poses(np.stack([x, y, z], -1), yaw, pitch, roll)
    return _indoor_scene(rng, room), T
