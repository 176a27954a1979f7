"""The built-in synthetic video world: driving and indoor scenes ray-cast with exact z-depth and poses.

Deterministic from a seed, any resolution, numpy only (no OpenGL); `render_dataset` writes `layout` folders.

World frame: x right, y down (gravity), z forward along the street; the ground is the plane y = 0, so a camera
``h`` metres high sits at y = -h. A scene is a list of axis-aligned textured rectangles ("quads": walls,
ground, box faces, pictures) and spheres (tree crowns, plants), ray-cast by a z-buffer over each primitive's
screen bounding box. Appearance is view-independent: textures are tiled in world coordinates and shading is
Lambertian from a fixed light, so warping frame t+1 into t with the ground-truth depth and pose reproduces
frame t up to occlusions and resampling. Anti-aliasing: mip-mapped trilinear texture sampling with a
footprint from the hit distance and incidence angle, plus ``supersample x supersample`` rays at geometric
edges (pixels whose primitive differs from a neighbour's). Depth is the z-depth of the pixel-centre ray;
**sky has depth 0 (unknown)**: it is infinitely far, so any ground-truth warp must mask it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sa4depth.data import layout
from sa4depth.data.synthetic_textures import TEXTURE_SIZE, material_library, picture_names
from sa4depth.errors import InputError

log = logging.getLogger(__name__)

SCENES = ("driving", "indoor")
#: KITTI's normalised intrinsics ``(fx / W, fy / H, cx / W, cy / H)``; cx = 0.5 is the image centre.
KITTI_INTRINSICS = (0.58, 1.92, 0.5, 0.5)
#: Mean camera motion per frame (metres) at speed factor 1. Driving: 0.75 m, three quarters of KITTI's
#: ~1 m per frame at the same normalised focal length, so image motion is KITTI-like relative to the
#: image width. At 0.25 m (before 2026-12) the median motion at 64 x 192 was 0.6-1.5 px and a third of
#: the pixels moved under 0.5 px: depth learned ~2x slower on the curve (docs/design.md, "The CPU recipe").
BASE_SPEED = {"driving": 0.75, "indoor": 0.06}
CAMERA_HEIGHT_RANGE = {"driving": (1.4, 1.8), "indoor": (1.2, 1.6)}
#: Depth stored for sky pixels (0 = unknown in `sa4depth.data.layout`).
SKY_DEPTH = 0.0
FORMAT_VERSION = 1

_NEAR = 0.05
_EDGE_CONTRAST = 0.02
_PLANE_AXES = ((1, 2), (0, 2), (0, 1))  # the two in-plane axes of a quad whose normal is along axis 0, 1, 2
_QUAD_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0]])
_CUBE_CORNERS = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=np.float64) * 2 - 1
_CUBE_EDGES = np.array([[i, i ^ bit] for i in range(8) for bit in (1, 2, 4) if i < i ^ bit])
# Rows of `_Scene.quad_shade`.
_U, _V, _N, _LOG_TEXELS, _MAT, _COLOUR = slice(0, 4), slice(4, 8), slice(8, 11), 11, 12, slice(13, 16)


def intrinsics_matrix(height: int, width: int, intrinsics: Sequence[float] = KITTI_INTRINSICS) -> np.ndarray:
    """The 3x3 K of a ``height x width`` image from normalised ``(fx/W, fy/H, cx/W, cy/H)``.

    Normalised principal points are measured from the image's top-left corner (not pixel centre), so
    ``cx = 0.5`` gives ``(W - 1) / 2`` in the pixel-centre convention of `sa4depth.geometry`.

    Example:
        >>> intrinsics_matrix(192, 640)[:2].round(2).tolist()
        [[371.2, 0.0, 319.5], [0.0, 368.64, 95.5]]
    """
    fx, fy, cx, cy = (float(x) for x in intrinsics)
    return np.array([[fx * width, 0, cx * width - 0.5], [0, fy * height, cy * height - 0.5], [0, 0, 1]])


# --------------------------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class _Scene:
    """Primitives and lighting, as flat arrays the renderer indexes by primitive id.

    Quads come first (ids ``0..Q-1``), then spheres (``Q..Q+P-1``); -1 is sky.
    """

    quad_geom: np.ndarray  # (Q, 7): normal axis, normal sign, plane coordinate, lo1, hi1, lo2, hi2
    quad_corners: np.ndarray  # (Q, 4, 3) world corners, for culling
    quad_shade: np.ndarray  # (16, Q) float32: u row (3 + offset), v row, normal, log2 texels/m, mat, colour
    spheres: np.ndarray  # (P, 4): centre xyz, radius
    sphere_shade: np.ndarray  # (6, P) float32: mat, log2 texels/m, tint rgb, texels/m
    light: np.ndarray  # (3,) unit vector towards the light
    ambient: float
    diffuse: float
    sky: np.ndarray | None  # (2, 3) horizon and zenith colour, or None for a closed room


class _Quad(NamedTuple):
    axis: int
    sign: int
    plane: float
    range1: tuple[float, float]  # bounds along _PLANE_AXES[axis][0]
    range2: tuple[float, float]  # bounds along _PLANE_AXES[axis][1]
    corners: np.ndarray  # (4, 3)
    cu: np.ndarray  # texture u = cu . P (metres), v = cv . P
    cv: np.ndarray
    u_off: float
    v_off: float
    tile: tuple[float, float]  # metres per texture tile along u and v
    mat: int
    tint: tuple[float, float, float]


class _SceneBuilder:
    """Collects boxes, quads and spheres in world coordinates, then packs them into a `_Scene`."""

    def __init__(self, rng: np.random.Generator):
        self.lib = material_library()
        self.rng = rng
        self.quads: list[_Quad] = []
        self.spheres: list[tuple] = []

    def quad(self, axis, sign, plane, range1, range2, mat, tint=(1.0, 1.0, 1.0), tile=None, align=None):
        """An axis-aligned rectangle facing ``sign * e_axis``, spanning ``range1 x range2`` in its plane.

        Texture coordinates follow the world, with u to the right and v downwards as seen from the front.
        ``tile`` overrides the material's metres per tile ``(u, v)``; ``align`` anchors the texture:
        None = random offset, "corner" = the top-left corner, "ground" = left edge and storeys from y = 0.
        """
        m = self.lib.index(mat)
        tile_u, tile_v = tile if tile is not None else (self.lib.metres[m],) * 2
        cu, cv = np.zeros(3), np.zeros(3)
        if axis == 0:
            cu[2], cv[1] = sign, 1.0
        elif axis == 1:
            cu[0], cv[2] = 1.0, 1.0
        else:
            cu[0], cv[1] = -sign, 1.0
        b, c = _PLANE_AXES[axis]
        corners = np.zeros((4, 3))
        corners[:, axis] = plane
        corners[:, b] = [range1[0], range1[1], range1[1], range1[0]]
        corners[:, c] = [range2[0], range2[0], range2[1], range2[1]]
        if align is None:
            u_off, v_off = self.rng.uniform(0, tile_u), self.rng.uniform(0, tile_v)
        else:
            u_off = (corners @ cu).min()
            v_off = (corners @ cv).min() if align == "corner" else 0.0
        self.quads.append(
            _Quad(axis, sign, plane, range1, range2, corners, cu, cv, u_off, v_off, (tile_u, tile_v), m, tint)
        )

    def box(self, lo, hi, side, top=None, tint=(1.0, 1.0, 1.0), align=None, faces=None, bottom=False):
        """An axis-aligned box; ``faces`` maps ``(axis, sign)`` to ``(material, tile, align)`` overrides."""
        faces = faces or {}
        for axis in range(3):
            for sign in (-1, 1):
                if axis == 1 and sign == 1 and not bottom:
                    continue  # the underside of things standing on the ground is never seen
                b, c = _PLANE_AXES[axis]
                mat = (top or side) if axis == 1 else side
                mat, tile, face_align = faces.get((axis, sign), (mat, None, align))
                plane = hi[axis] if sign > 0 else lo[axis]
                self.quad(axis, sign, plane, (lo[b], hi[b]), (lo[c], hi[c]), mat, tint, tile, face_align)

    def sphere(self, centre, radius, mat, tint=(1.0, 1.0, 1.0)):
        self.spheres.append((*centre, radius, self.lib.index(mat), tint))

    def picture(self, axis, sign, plane, centre_h, centre_y, width):
        """A random photo from `skimage.data` at its own aspect ratio on a wall (normal along x or z).

        ``centre_h`` is the picture centre's world coordinate along the wall (z for axis 0, x for axis 2).
        """
        name = str(self.rng.choice(picture_names()))
        height = width / self.lib.aspect[name]
        h_range = (centre_h - width / 2, centre_h + width / 2)
        y_range = (centre_y - height / 2, centre_y + height / 2)
        ranges = (y_range, h_range) if axis == 0 else (h_range, y_range)
        self.quad(axis, sign, plane, *ranges, name, tile=(width, height), align="corner")

    def build(self, light, ambient: float, diffuse: float, sky=None) -> _Scene:
        light = np.asarray(light, dtype=np.float64)
        light = light / np.linalg.norm(light)
        q = self.quads
        geom = np.array([(x.axis, x.sign, x.plane, *x.range1, *x.range2) for x in q], dtype=np.float64)
        shade = np.zeros((16, len(q)), dtype=np.float64)
        for k, x in enumerate(q):
            normal = np.zeros(3)
            normal[x.axis] = x.sign
            texels_u, texels_v = TEXTURE_SIZE / x.tile[0], TEXTURE_SIZE / x.tile[1]
            shade[_U, k] = [*(x.cu * texels_u), -x.u_off * texels_u]
            shade[_V, k] = [*(x.cv * texels_v), -x.v_off * texels_v]
            shade[_N, k] = normal
            shade[_LOG_TEXELS, k] = 0.5 * math.log2(texels_u * texels_v)
            shade[_MAT, k] = x.mat
            shade[_COLOUR, k] = np.asarray(x.tint) * (ambient + diffuse * max(0.0, float(normal @ light)))
        spheres = np.array([s[:4] for s in self.spheres], dtype=np.float64).reshape(-1, 4)
        sphere_shade = np.zeros((6, len(self.spheres)))
        for k, (*_, m, tint) in enumerate(self.spheres):
            texels = TEXTURE_SIZE / self.lib.metres[m]
            sphere_shade[:, k] = [m, math.log2(texels), *tint, texels]
        return _Scene(
            quad_geom=geom,
            quad_corners=np.array([x.corners for x in q]),
            quad_shade=shade.astype(np.float32),
            spheres=spheres,
            sphere_shade=sphere_shade.astype(np.float32),
            light=light,
            ambient=float(ambient),
            diffuse=float(diffuse),
            sky=None if sky is None else np.asarray(sky, dtype=np.float32),
        )


def _jitter(rng: np.random.Generator, colour, amount: float = 0.08) -> tuple[float, float, float]:
    return tuple(
        float(c) for c in np.clip(np.asarray(colour) * (1 + rng.uniform(-amount, amount, 3)), 0, 1.5)
    )


def _colour(rng: np.random.Generator, low: float, high: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(low, high, 3))


def _driving_scene(rng: np.random.Generator, street, z_last: float) -> _Scene:
    """A straight street along +z: road with markings, kerbs and sidewalks, parked cars, poles, trees,
    hedges, building rows at varying setbacks, a second row behind, and a cross street closing the view."""
    s = _SceneBuilder(rng)
    road, parking, lane_w, lanes = street["road_half"], street["parking"], street["lane_w"], street["lanes"]
    kerb = rng.uniform(0.1, 0.18)
    z0, z_end = -40.0, z_last + rng.uniform(45.0, 90.0)
    up = -1  # sign of a normal pointing up (y is down)

    asphalt = _jitter(rng, (1, 1, 1), 0.12)
    s.quad(1, up, 0.0, (-road, road), (z0, z_end - 12), "asphalt", asphalt)
    s.quad(1, up, -0.002, (-150.0, 150.0), (z_end - 12, z_end - 3), "asphalt", asphalt)  # the cross street
    for side in (-1, 1):  # verges: grass beyond the pavement, seen between buildings
        xs = (road, 400.0) if side > 0 else (-400.0, -road)
        s.quad(1, up, 0.0, xs, (z0 - 100, z_end + 100), "verge")
    paint = -0.004  # markings float 4 mm above the asphalt, so they win the depth test
    dash = rng.uniform(2.0, 3.5)
    for lane_line in range(-lanes + 1, lanes):
        x = lane_line * lane_w
        width = 0.15 if lane_line == 0 else 0.12
        for z in np.arange(z0 + rng.uniform(0, 2 * dash), z_end - 12, 2 * dash):
            s.quad(1, up, paint, (x - width / 2, x + width / 2), (z, z + dash), "marking")
    for side in (-1, 1):
        x = side * (road - parking)
        s.quad(1, up, paint, (x - 0.06, x + 0.06), (z0, z_end - 12), "marking")

    car_colours = [
        (0.9, 0.9, 0.9),
        (0.12, 0.12, 0.13),
        (0.6, 0.62, 0.66),
        (0.7, 0.12, 0.1),
        (0.15, 0.25, 0.6),
        (0.2, 0.35, 0.22),
        (0.85, 0.7, 0.2),
        (0.45, 0.4, 0.35),
    ]
    for side in (-1, 1):
        walk = rng.uniform(1.5, 4.5)  # pavement width
        inner, outer = road, road + walk

        def xr(a, b, side=side):  # an x range given as distances from the street centre on this side
            return (a, b) if side > 0 else (-b, -a)

        s.box((xr(inner, outer)[0], -kerb, z0), (xr(inner, outer)[1], 0.0, z_end - 12), "kerb", top="paving")

        # parked cars
        z = z0 + rng.uniform(0, 5)
        while z < z_end - 18:
            length, width = rng.uniform(3.8, 4.8), rng.uniform(1.65, 1.9)
            if rng.random() < 0.6:
                centre = road - parking / 2 + rng.uniform(-0.15, 0.15)
                x0, x1 = xr(centre - width / 2, centre + width / 2)
                colour = _jitter(rng, car_colours[rng.integers(len(car_colours))], 0.05)
                top = -rng.uniform(0.95, 1.1)
                s.box((x0, top, z), (x1, -0.3, z + length), "car_paint", tint=colour)
                cab = rng.uniform(0.45, 0.6)
                c0 = z + length * rng.uniform(0.2, 0.3)
                s.box((x0 + 0.1, top - cab, c0), (x1 - 0.1, top, c0 + 0.5 * length), "car_glass")
                for axle in (z + 0.5, z + length - 1.15):
                    s.box((x0 + 0.08, -0.64, axle), (x1 - 0.08, 0.0, axle + 0.65), "tyre")
            z += length + rng.uniform(0.8, 6.0)

        # street lights and trees on the pavement
        z = z0 + rng.uniform(0, 20)
        while z < z_end - 15:
            x = xr(inner + 0.5, inner + 0.66)
            h = rng.uniform(5.0, 8.0)
            s.box((x[0], -h, z), (x[1], 0.0, z + 0.16), "metal")
            arm = xr(inner - 1.4, inner + 0.66)
            s.box((arm[0], -h, z), (arm[1], -h + 0.14, z + 0.16), "metal", bottom=True)
            z += rng.uniform(18.0, 35.0)
        z = z0 + rng.uniform(0, 10)
        while z < z_end - 15:
            if rng.random() < 0.6:
                x = inner + walk * rng.uniform(0.5, 0.8)
                trunk, r = rng.uniform(2.2, 3.5), rng.uniform(1.0, 2.2)
                xs = xr(x - 0.15, x + 0.15)
                s.box((xs[0], -trunk, z), (xs[1], -kerb, z + 0.3), "bark")
                s.sphere((side * x, -trunk - 0.6 * r, z + 0.15), r, "foliage", _jitter(rng, (1, 1, 1), 0.15))
            z += rng.uniform(7.0, 18.0)

        # buildings, with hedges or low walls in front gardens
        z = z0
        facades = ["facade_brick", "facade_plaster", "facade_concrete", "facade_office"]
        while z < z_end - 14:
            width = rng.uniform(6.0, 20.0)
            if rng.random() < 0.2:
                z += rng.uniform(3.0, 10.0)  # an alley: the back row shows through
                continue
            setback = 0.0 if rng.random() < 0.4 else rng.uniform(0.5, 5.0)
            depth, height = rng.uniform(8.0, 16.0), rng.uniform(4.5, 20.0)
            front = outer + setback
            x0, x1 = xr(front, front + depth)
            facade = facades[rng.integers(len(facades))]
            width = min(width, z_end - 14 - z)
            s.box(
                (x0, -height, z),
                (x1, 0.0, z + width),
                facade,
                top="roof",
                tint=_jitter(rng, (1, 1, 1)),
                align="ground",
            )
            if rng.random() < 0.35:  # a shop sign or poster on the ground floor
                plane = x0 - 0.03 if side > 0 else x1 + 0.03
                centre = z + width * rng.uniform(0.3, 0.7)
                s.picture(0, -side, plane, centre, -rng.uniform(2.6, 3.4), rng.uniform(1.4, 2.6))
            if setback > 1.2 and rng.random() < 0.6:
                hx = xr(outer + 0.1, outer + 0.7)
                if rng.random() < 0.6:
                    s.box((hx[0], -rng.uniform(0.6, 1.3), z + 0.5), (hx[1], 0.0, z + width - 0.5), "hedge")
                else:
                    s.box(
                        (hx[0], -rng.uniform(0.4, 0.9), z + 0.5), (hx[1], 0.0, z + width - 0.5), "wall_brick"
                    )
            z += width
        # back row: taller blocks 25 m behind the pavement, so alleys never show an empty horizon
        z = z0 - 60
        while z < z_end:
            width = rng.uniform(15.0, 40.0)
            x0, x1 = xr(outer + 25.0, outer + 40.0)
            s.box(
                (x0, -rng.uniform(8.0, 30.0), z),
                (x1, 0.0, z + width),
                facades[rng.integers(4)],
                top="roof",
                tint=_jitter(rng, (1, 1, 1)),
                align="ground",
            )
            z += width
    # cross street: a row of buildings closing the view, with its own pavement
    s.box((-150.0, -kerb, z_end - 3.0), (150.0, 0.0, z_end), "kerb", top="paving")
    x = -150.0
    while x < 150.0:
        width = rng.uniform(8.0, 25.0)
        s.box(
            (x, -rng.uniform(6.0, 25.0), z_end),
            (x + width, 0.0, z_end + 12.0),
            facades[rng.integers(4)],
            top="roof",
            tint=_jitter(rng, (1, 1, 1)),
            align="ground",
        )
        x += width

    elevation, azimuth = np.deg2rad(rng.uniform(25, 60)), rng.uniform(0, 2 * np.pi)
    light = (np.cos(elevation) * np.sin(azimuth), -np.sin(elevation), np.cos(elevation) * np.cos(azimuth))
    sky = (_jitter(rng, (0.78, 0.84, 0.9), 0.04), _jitter(rng, (0.36, 0.55, 0.85), 0.08))
    return s.build(light, ambient=0.5, diffuse=0.6, sky=sky)


def _indoor_scene(rng: np.random.Generator, room) -> _Scene:
    """A closed room: floor, ceiling and walls with pictures, a door, windows, baseboards and furniture
    (cabinets, bookshelves, sofas, desks, plants) along the walls, and a table on a rug in the middle."""
    s = _SceneBuilder(rng)
    half_w, half_d, height = room["half_w"], room["half_d"], room["height"]
    floor = ["wood_floor", "tiles", "carpet"][rng.integers(3)]
    # Room surfaces overlap by 1 cm beyond the corners so that no ray escapes through a seam.
    e = 0.01
    s.quad(
        1, -1, 0.0, (-half_w - e, half_w + e), (-half_d - e, half_d + e), floor, _jitter(rng, (1, 1, 1), 0.1)
    )
    s.quad(1, 1, -height, (-half_w - e, half_w + e), (-half_d - e, half_d + e), "ceiling")
    # Walls as (normal axis, inward sign, plane, half-length along the wall).
    walls = [
        (0, 1, -half_w, half_d),
        (0, -1, half_w, half_d),
        (2, 1, -half_d, half_w),
        (2, -1, half_d, half_w),
    ]
    wall_mat = "wall_brick" if rng.random() < 0.2 else "paint"
    paint = _colour(rng, 0.75, 1.0)
    for axis, sign, plane, half in walls:
        along = (-half - e, half + e)
        ranges = ((-height - e, e), along) if axis == 0 else (along, (-height - e, e))
        tint = paint if rng.random() < 0.75 else _colour(rng, 0.6, 1.0)
        s.quad(axis, sign, plane, *ranges, wall_mat, tint)

    def on_wall(axis, sign, plane, a0, a1, y0, y1, offset, mat, tint=(1, 1, 1), **kw):
        """A box standing against a wall: ``[a0, a1]`` along it, ``offset`` deep, from y0 to y1."""
        d = plane + sign * offset
        n0, n1 = min(plane, d), max(plane, d)
        lo, hi = ([n0, y0, a0], [n1, y1, a1]) if axis == 0 else ([a0, y0, n0], [a1, y1, n1])
        s.box(lo, hi, mat, tint=tint, **kw)

    wood_tint = _jitter(rng, (1, 1, 1), 0.2)
    door_wall = rng.integers(4)
    for w, (axis, sign, plane, half) in enumerate(walls):
        # baseboard, door or windows, pictures
        on_wall(axis, sign, plane, -half, half, -0.1, 0.0, 0.02, "wood", wood_tint)
        if w == door_wall:
            centre = rng.uniform(-half + 0.8, half - 0.8)
            ranges = ((-2.1, 0.0), (centre - 0.45, centre + 0.45))
            s.quad(
                axis, sign, plane + sign * 0.01, *(ranges if axis == 0 else ranges[::-1]), "wood", wood_tint
            )
        elif rng.random() < 0.5:
            centre = rng.uniform(-half + 1.0, half - 1.0)
            ranges = ((-2.3, -0.9), (centre - 0.6, centre + 0.6))
            s.quad(axis, sign, plane + sign * 0.01, *(ranges if axis == 0 else ranges[::-1]), "window")
        # pictures, one per slot along the wall so that they never overlap (coplanar quads would flicker)
        slots = int(rng.integers(1, 4))
        slot = 2 * half / slots
        for j in range(slots):
            if rng.random() < 0.7:
                width = min(rng.uniform(0.5, 1.2), 0.8 * slot)
                centre = -half + (j + 0.5) * slot + rng.uniform(-0.1, 0.1) * slot
                s.picture(axis, sign, plane + sign * 0.015, centre, -rng.uniform(1.4, 1.8), width)
        # furniture along the wall, never deeper than 1.1 m (the camera path keeps 1.7 m from walls)
        a = -half + rng.uniform(0.1, 1.0)
        while a < half - 0.7:
            width = rng.uniform(0.6, 2.0)
            a1 = min(a + width, half - 0.1)
            kind = rng.integers(5)
            if kind == 0:  # cabinet
                top, depth = -rng.uniform(0.6, 1.1), rng.uniform(0.4, 0.6)
                on_wall(axis, sign, plane, a, a1, top, 0.0, depth, "wood", wood_tint)
            elif kind == 1:  # bookshelf: the books texture fills its front
                top, depth = -rng.uniform(1.6, 2.2), rng.uniform(0.3, 0.4)
                face = {(axis, sign): ("books", (a1 - a, -top), "corner")}
                on_wall(axis, sign, plane, a, a1, top, 0.0, depth, "wood", wood_tint, faces=face)
            elif kind == 2:  # sofa: seat and back
                tint = _colour(rng, 0.3, 1.0)
                on_wall(axis, sign, plane, a, a1, -0.45, 0.0, 0.9, "fabric", tint)
                on_wall(axis, sign, plane, a, a1, -0.9, -0.45, 0.22, "fabric", tint)
            elif kind == 3:  # desk: top and four legs
                depth = rng.uniform(0.6, 0.8)
                on_wall(axis, sign, plane, a, a1, -0.76, -0.72, depth, "wood", wood_tint, bottom=True)
                for la in (a + 0.03, a1 - 0.08):
                    for ld in (0.03, depth - 0.08):
                        on_wall(axis, sign, plane + sign * ld, la, la + 0.05, -0.72, 0.0, 0.05, "metal")
            else:  # plant in a pot
                r = rng.uniform(0.25, 0.45)
                mid = (a + a1) / 2
                on_wall(axis, sign, plane + sign * 0.1, mid - 0.18, mid + 0.18, -0.4, 0.0, 0.36, "tiles")
                out = plane + sign * 0.28
                centre = (out, -0.4 - 0.8 * r, mid) if axis == 0 else (mid, -0.4 - 0.8 * r, out)
                s.sphere(centre, r, "foliage", _jitter(rng, (1, 1, 1), 0.2))
            a = a1 + rng.uniform(0.2, 1.2)
    # centre: a rug and a table, inside the camera's elliptic path
    inner_x, inner_z = room["path_a"] - 0.9, room["path_b"] - 0.9
    if inner_x > 0.35 and inner_z > 0.35:
        s.quad(
            1, -1, -0.005, (-inner_x, inner_x), (-inner_z, inner_z), "carpet", _jitter(rng, (1, 1, 1), 0.3)
        )
        tx, tz = 0.6 * inner_x, 0.6 * inner_z
        s.box((-tx, -0.76, -tz), (tx, -0.72, tz), "wood", tint=wood_tint, bottom=True)
        for lx in (-tx + 0.03, tx - 0.08):
            for lz in (-tz + 0.03, tz - 0.08):
                s.box((lx, -0.72, lz), (lx + 0.05, 0.0, lz + 0.05), "metal")
    light = (rng.uniform(-0.4, 0.4), -1.0, rng.uniform(-0.4, 0.4))
    return s.build(light, ambient=0.55, diffuse=0.5, sky=None)


# ---------------------------------------------------------------------------------------------- camera


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


def _arc_steps(rng: np.random.Generator, frames: int, speed: float) -> np.ndarray:
    """Distance travelled at each frame, ``(frames,)`` from 0, with +-8 % smooth speed variation."""
    steps = 1.0 + 0.08 * np.sin(2 * np.pi * np.arange(frames - 1) / rng.uniform(30, 80) + rng.uniform(0, 6.3))
    steps *= speed / steps.mean()
    return np.concatenate([[0.0], np.cumsum(steps)])


def _poses(position: np.ndarray, yaw, pitch, roll) -> np.ndarray:
    T = np.tile(np.eye(4), (len(position), 1, 1))
    T[:, :3, :3] = _rotation(yaw, pitch, roll)
    T[:, :3, 3] = position
    return T


def _driving(rng: np.random.Generator, frames: int, speed: float, camera_height: float):
    """A gently weaving drive along the right lane of a straight street; returns (scene, T_world_cam)."""
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
    s_dense = np.concatenate([[0], np.cumsum(np.hypot(np.diff(z_dense), np.diff(x_dense)))])
    z = np.interp(arc, s_dense, z_dense)
    x = np.interp(z, z_dense, x_dense)
    slope = sum(a * 2 * np.pi / p * np.cos(2 * np.pi * z / p + ph) for a, p, ph in weave)
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


# -------------------------------------------------------------------------------------------- renderer


def _screen_boxes(points: np.ndarray, edges: np.ndarray, K: np.ndarray, height: int, width: int):
    """Conservative pixel bounding boxes of convex shapes given by camera-frame vertices ``(N, C, 3)``.

    The shapes are clipped at the near plane first (a shape reaching behind the camera still projects to
    a finite region). Returns ``(visible (N,), boxes (N, 4) int as u0, u1, v0, v1 with exclusive ends)``.
    """
    z = points[..., 2]
    a, b = points[:, edges[:, 0]], points[:, edges[:, 1]]
    za, zb = a[..., 2], b[..., 2]
    crossing = (za - _NEAR) * (zb - _NEAR) < 0
    s = (_NEAR - za) / np.where(crossing, zb - za, 1.0)
    clipped = np.concatenate([points, a + s[..., None] * (b - a)], axis=1)
    valid = np.concatenate([z >= _NEAR, crossing], axis=1)
    depth = np.maximum(clipped[..., 2], _NEAR)
    u = K[0, 0] * clipped[..., 0] / depth + K[0, 2]
    v = K[1, 1] * clipped[..., 1] / depth + K[1, 2]
    with np.errstate(invalid="ignore"):
        u0 = np.where(valid, u, np.inf).min(1)
        u1 = np.where(valid, u, -np.inf).max(1)
        v0 = np.where(valid, v, np.inf).min(1)
        v1 = np.where(valid, v, -np.inf).max(1)
    visible = valid.any(1) & (u1 > -2) & (u0 < width + 1) & (v1 > -2) & (v0 < height + 1)
    boxes = np.zeros((len(points), 4), dtype=np.int64)
    sel = np.flatnonzero(visible)
    # One pixel of margin: supersampling rays reach half a pixel beyond their pixel centre.
    boxes[sel, 0] = np.clip(np.floor(u0[sel]) - 1, 0, width)
    boxes[sel, 1] = np.clip(np.ceil(u1[sel]) + 2, 0, width)
    boxes[sel, 2] = np.clip(np.floor(v0[sel]) - 1, 0, height)
    boxes[sel, 3] = np.clip(np.ceil(v1[sel]) + 2, 0, height)
    visible &= (boxes[:, 1] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 2])
    return visible, boxes


class _Renderer:
    """Ray-casts one scene at one resolution; `render` gives the image and depth for a camera pose."""

    def __init__(self, scene: _Scene, K: np.ndarray, height: int, width: int, supersample: int = 3):
        if supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        self.scene, self.K, self.height, self.width = scene, K, height, width
        self.lib = material_library()
        self.supersample = supersample
        v, u = np.mgrid[0:height, 0:width].astype(np.float64)
        self.cam_x = ((u - K[0, 2]) / K[0, 0]).astype(np.float32)
        self.cam_y = ((v - K[1, 2]) / K[1, 1]).astype(np.float32)
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        self.sub_u = np.tile(offsets, supersample)
        self.sub_v = np.repeat(offsets, supersample)
        # lod = log2(texel footprint) = log2(depth / focal * texels per metre / sqrt(cos incidence)).
        # The +0.5 bias keeps textures a little softer than the pixel grid: they then survive bilinear
        # resampling (view synthesis) almost unchanged, which keeps the ground-truth warp tight.
        self.lod_const = np.float32(0.5 - 0.5 * math.log2(K[0, 0] * K[1, 1]))
        self.nq = len(scene.quad_geom)
        self.quad_geom = scene.quad_geom.tolist()

    def render(self, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Render ``(H, W, 3) uint8`` image and ``(H, W) float32`` z-depth (0 = sky) at ``T_world_cam``."""
        H, W = self.height, self.width
        R, o = T_world_cam[:3, :3], T_world_cam[:3, 3]
        Rl, ol = R.tolist(), [float(x) for x in o]
        D = [Rl[i][0] * self.cam_x + Rl[i][1] * self.cam_y + np.float32(Rl[i][2]) for i in range(3)]
        visible_q, boxes_q, visible_s, boxes_s = self._cull(R, o)
        zbuf = np.full((H, W), np.inf, dtype=np.float32)
        ibuf = np.full((H, W), -1, dtype=np.int32)
        self._trace_grid(D, ol, zbuf, ibuf, visible_q, boxes_q, visible_s, boxes_s)
        colour, key = self._shade(ibuf.ravel(), zbuf.ravel(), [d.ravel() for d in D], ol, 0.0)
        colour = colour.reshape(3, H, W)
        if self.supersample > 1:
            self._antialias_edges(colour, key.reshape(H, W), R, ol, visible_q, boxes_q, visible_s, boxes_s)
        depth = np.where(ibuf >= 0, zbuf, np.float32(SKY_DEPTH))
        colour *= 255
        colour += 0.5
        np.clip(colour, 0, 255, out=colour)
        image = np.ascontiguousarray(colour.astype(np.uint8).transpose(1, 2, 0))
        return image, depth

    def _cull(self, R, o):
        """Primitives facing the camera whose (near-clipped) projection touches the image."""
        sc, K, H, W = self.scene, self.K, self.height, self.width
        geom = sc.quad_geom
        axis = geom[:, 0].astype(np.int64)
        facing = (o[axis] - geom[:, 2]) * geom[:, 1] > 1e-9
        vis_q, boxes_q = _screen_boxes((sc.quad_corners - o) @ R, _QUAD_EDGES, K, H, W)
        vis_q &= facing
        if len(sc.spheres):
            cubes = sc.spheres[:, None, :3] + sc.spheres[:, None, 3:4] * _CUBE_CORNERS
            vis_s, boxes_s = _screen_boxes((cubes - o) @ R, _CUBE_EDGES, K, H, W)
        else:
            vis_s, boxes_s = np.zeros(0, bool), np.zeros((0, 4), np.int64)
        return np.flatnonzero(vis_q), boxes_q, np.flatnonzero(vis_s), boxes_s

    def _trace_grid(self, D, o, zbuf, ibuf, visible_q, boxes_q, visible_s, boxes_s):
        """Z-buffer every visible primitive over its screen box (2D slices of the full-resolution rays)."""
        for k in visible_q.tolist():
            u0, u1, v0, v1 = boxes_q[k].tolist()
            sl = (slice(v0, v1), slice(u0, u1))
            t, hit = self._hit_quad(k, [d[sl] for d in D], o)
            zb = zbuf[sl]
            hit &= t < zb
            np.copyto(zb, t, where=hit)
            np.copyto(ibuf[sl], k, where=hit)
        for k in visible_s.tolist():
            u0, u1, v0, v1 = boxes_s[k].tolist()
            sl = (slice(v0, v1), slice(u0, u1))
            t, hit = self._hit_sphere(k, [d[sl] for d in D], o)
            zb = zbuf[sl]
            hit &= t < zb
            np.copyto(zb, t, where=hit)
            np.copyto(ibuf[sl], self.nq + k, where=hit)

    def _hit_quad(self, k, D, o):
        """Ray parameter (= z-depth, camera rays have z = 1) and hit mask of quad ``k`` for rays ``D``."""
        axis, _, plane, lo1, hi1, lo2, hi2 = self.quad_geom[k]
        a = int(axis)
        b, c = _PLANE_AXES[a]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (plane - o[a]) / D[a]
        p = D[b] * t
        p += o[b]
        hit = p >= lo1
        hit &= p <= hi1
        p = D[c] * t
        p += o[c]
        hit &= p >= lo2
        hit &= p <= hi2
        hit &= t > _NEAR
        return t, hit

    def _hit_sphere(self, k, D, o):
        cx, cy, cz, r = self.scene.spheres[k].tolist()
        oc = (o[0] - cx, o[1] - cy, o[2] - cz)
        half_b = D[0] * oc[0] + D[1] * oc[1] + D[2] * oc[2]
        dd = D[0] * D[0] + D[1] * D[1] + D[2] * D[2]
        disc = half_b * half_b - dd * (oc[0] ** 2 + oc[1] ** 2 + oc[2] ** 2 - r * r)
        hit = disc > 0
        t = (-half_b - np.sqrt(np.maximum(disc, 0))) / dd
        hit &= t > _NEAR
        return t, hit

    def _shade(self, ids, t, D, o, lod_shift: float, trilinear: bool = True):
        """Colours ``(3, N)`` float32 and edge keys ``(N,)`` of hits (primitive ids, -1 = sky) on rays ``D``.

        ``lod_shift`` lowers the mip level for sub-pixel rays. The key identifies the primitive and, for
        spheres, which triplanar projection textures the hit: pixels whose key differs from a neighbour's
        get supersampled.
        """
        sc, lib = self.scene, self.lib
        out = np.empty((3, len(ids)), dtype=np.float32)
        key = ids * 4
        lod_const = self.lod_const - np.float32(lod_shift)
        sky = np.flatnonzero(ids < 0)
        if len(sky):
            dx, dy, dz = (d[sky] for d in D)
            if sc.sky is None:  # a closed room has no sky; a stray ray gets black
                out[:, sky] = 0
            else:
                up = np.sqrt(np.clip(-dy / np.sqrt(dx * dx + dy * dy + dz * dz), 0, 1))
                out[:, sky] = sc.sky[0, :, None] + (sc.sky[1] - sc.sky[0])[:, None] * up
        sel = np.flatnonzero((ids >= 0) & (ids < self.nq))
        if len(sel):
            k = ids[sel]
            A = np.take(sc.quad_shade, k, axis=1)
            dx, dy, dz = (d[sel] for d in D)
            tt = t[sel]
            # Texture coordinates are affine in the hit point o + t d: fold the origin into the offsets.
            u = (A[0] * dx + A[1] * dy + A[2] * dz) * tt
            u += A[0] * o[0] + A[1] * o[1] + A[2] * o[2] + A[3]
            v = (A[4] * dx + A[5] * dy + A[6] * dz) * tt
            v += A[4] * o[0] + A[5] * o[1] + A[6] * o[2] + A[7]
            n_dot_d = A[8] * dx + A[9] * dy + A[10] * dz
            lod = np.log2(tt) + 0.25 * np.log2((dx * dx + dy * dy + dz * dz) / (n_dot_d * n_dot_d + 1e-12))
            lod += A[_LOG_TEXELS] + lod_const
            albedo = lib.sample(A[_MAT].astype(np.int32), u, v, lod, trilinear)
            albedo *= A[_COLOUR]
            out[:, sel] = albedo
        sel = np.flatnonzero(ids >= self.nq)
        if len(sel):
            k = ids[sel] - self.nq
            A = np.take(sc.sphere_shade, k, axis=1)
            centre = sc.spheres[k, :3].T.astype(np.float32)
            radius = sc.spheres[k, 3].astype(np.float32)
            dx, dy, dz = (d[sel] for d in D)
            tt = t[sel]
            P = [o[0] + tt * dx, o[1] + tt * dy, o[2] + tt * dz]
            n = [(P[i] - centre[i]) / radius for i in range(3)]
            major = np.abs(np.stack(n)).argmax(0)
            # Triplanar mapping: project the texture along the normal's dominant axis.
            u = np.choose(major, [P[2], P[0], P[0]]) * A[5]
            v = np.choose(major, [P[1], P[2], P[1]]) * A[5]
            n_dot_d = n[0] * dx + n[1] * dy + n[2] * dz
            cos = np.abs(n_dot_d) / np.sqrt(dx * dx + dy * dy + dz * dz)
            lod = np.log2(tt) - 0.5 * np.log2(np.maximum(cos, 1e-3)) + A[1] + lod_const
            albedo = lib.sample(A[0].astype(np.int32), u, v, lod, trilinear)
            light = sc.light.astype(np.float32)
            lambert = np.maximum(n[0] * light[0] + n[1] * light[1] + n[2] * light[2], 0)
            albedo *= A[2:5] * (sc.ambient + sc.diffuse * lambert)
            out[:, sel] = albedo
            key[sel] += 1 + major
        return out, key

    def _antialias_edges(self, colour, key, R, o, visible_q, boxes_q, visible_s, boxes_s):
        """Replace the colour of pixels on a primitive boundary by the mean of s x s sub-pixel rays."""
        H, W, K = self.height, self.width, self.K
        # Boundaries between primitives of (nearly) the same colour cannot alias visibly: skip them.
        edge = np.zeros((H, W), dtype=bool)
        every, tail, head = slice(None), slice(1, None), slice(None, -1)
        for a, b in (((every, tail), (every, head)), ((tail, every), (head, every))):
            step = np.abs(colour[(0, *a)] - colour[(0, *b)])
            for c in (1, 2):
                np.maximum(step, np.abs(colour[(c, *a)] - colour[(c, *b)]), out=step)
            diff = step > _EDGE_CONTRAST
            diff &= key[a] != key[b]
            edge[a] |= diff
            edge[b] |= diff
        flat = np.flatnonzero(edge)
        if not len(flat):
            return
        # Sub-pixel rays can only see primitives that some edge pixel's centre ray sees (thinner ones
        # are missed either way), so trace just those.
        seen = np.zeros(self.nq + len(self.scene.spheres) + 1, dtype=bool)
        seen[key.ravel()[flat] // 4] = True  # sky (-1) lands in the spare last slot
        visible_q = visible_q[seen[visible_q]]
        visible_s = visible_s[seen[self.nq + visible_s]]
        ev, eu = np.divmod(flat, W)
        row_start = np.searchsorted(ev, np.arange(H + 1))
        n_sub = self.supersample**2
        # Sub-pixel rays are ordered (sub-sample, edge pixel), so averaging them reduces a middle axis.
        n_edge = len(flat)
        cam_x = ((eu + self.sub_u[:, None] - K[0, 2]) / K[0, 0]).astype(np.float32).ravel()
        cam_y = ((ev + self.sub_v[:, None] - K[1, 2]) / K[1, 1]).astype(np.float32).ravel()
        Rl = R.tolist()
        D = [Rl[i][0] * cam_x + Rl[i][1] * cam_y + np.float32(Rl[i][2]) for i in range(3)]
        zbuf = np.full(len(cam_x), np.inf, dtype=np.float32)
        ibuf = np.full(len(cam_x), -1, dtype=np.int32)
        sub = np.arange(n_sub)
        for ids, boxes, hit_fn, id_base in (
            (visible_q, boxes_q, self._hit_quad, 0),
            (visible_s, boxes_s, self._hit_sphere, self.nq),
        ):
            for k in ids.tolist():
                u0, u1, v0, v1 = boxes[k].tolist()
                r0, r1 = row_start[v0], row_start[v1]
                if r1 == r0:
                    continue
                cols = eu[r0:r1]
                pix = r0 + np.flatnonzero((cols >= u0) & (cols < u1))
                if not len(pix):
                    continue
                rays = (sub[:, None] * n_edge + pix).ravel()
                t, hit = hit_fn(k, [d[rays] for d in D], o)
                hit &= t < zbuf[rays]
                rays, t = rays[hit], t[hit]
                zbuf[rays] = t
                ibuf[rays] = id_base + k
        # Sub-pixel rays are averaged, which hides the level switches of plain bilinear mip sampling.
        sub_colour, _ = self._shade(ibuf, zbuf, D, o, math.log2(self.supersample), trilinear=False)
        colour.reshape(3, -1)[:, flat] = sub_colour.reshape(3, n_sub, n_edge).mean(1)


# ---------------------------------------------------------------------------------------- sequences


@dataclass(frozen=True)
class SequenceSpec:
    """Everything that determines one synthetic sequence (its frames follow bit-exactly from this)."""

    scene: str = "driving"
    seed: int = 0
    frames: int = 30
    speed: float = 1.0  # factor on BASE_SPEED[scene]
    camera_height: float | None = None  # metres; None = middle of CAMERA_HEIGHT_RANGE[scene]

    def resolved_height(self) -> float:
        if self.camera_height is not None:
            return float(self.camera_height)
        return float(np.mean(CAMERA_HEIGHT_RANGE[self.scene]))

    def speed_m_per_frame(self, base_speed: float | None = None) -> float:
        return float(self.speed) * (BASE_SPEED[self.scene] if base_speed is None else base_speed)


@dataclass
class SyntheticSequence:
    """A rendered sequence.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 RGB frames.
        depth: ``(N, H, W)`` float32 z-depth in metres, 0 for sky.
        T_world_cam: ``(N, 4, 4)`` float64 camera-to-world poses.
        K: ``(3, 3)`` intrinsics at ``H x W``.
        spec: what was rendered.
    """

    images: np.ndarray
    depth: np.ndarray
    T_world_cam: np.ndarray
    K: np.ndarray
    spec: SequenceSpec


def _check_spec(spec: SequenceSpec) -> None:
    if spec.scene not in SCENES:
        raise ValueError(f"unknown scene {spec.scene!r}; choose one of {', '.join(SCENES)}")
    if spec.frames < 3:
        raise ValueError(
            f"a sequence needs at least 3 frames (a target and two neighbours), got {spec.frames}"
        )
    if not spec.speed > 0:
        raise ValueError(f"speed factor must be positive, got {spec.speed}")


def _setup(spec, height, width, intrinsics, supersample, base_speed):
    """Build the scene, camera path and renderer of one sequence."""
    _check_spec(spec)
    if height < 8 or width < 8:
        raise ValueError(f"image size must be at least 8 x 8, got {height} x {width}")
    rng = np.random.default_rng(spec.seed)
    make = _driving if spec.scene == "driving" else _indoor
    scene, T = make(rng, spec.frames, spec.speed_m_per_frame(base_speed), spec.resolved_height())
    K = intrinsics_matrix(height, width, intrinsics)
    return _Renderer(scene, K, height, width, supersample), T, K


def iter_frames(
    spec: SequenceSpec,
    height: int = 192,
    width: int = 640,
    intrinsics: Sequence[float] = KITTI_INTRINSICS,
    supersample: int = 3,
    base_speed: float | None = None,
):
    """Yield ``(index, image (H, W, 3) uint8, depth (H, W) float32, T_world_cam (4, 4))`` for one sequence.

    Renders lazily, one frame at a time (what `render_dataset` uses to stream frames to disk).
    """
    renderer, T, _ = _setup(spec, height, width, intrinsics, supersample, base_speed)
    for i, pose in enumerate(T):
        image, depth = renderer.render(pose)
        yield i, image, depth, pose


def render_sequence(
    scene: str = "driving",
    frames: int = 30,
    height: int = 192,
    width: int = 640,
    seed: int = 0,
    speed: float = 1.0,
    camera_height: float | None = None,
    intrinsics: Sequence[float] = KITTI_INTRINSICS,
    supersample: int = 3,
    base_speed: float | None = None,
) -> SyntheticSequence:
    """Render one sequence into memory.

    Args:
        scene: "driving" or "indoor".
        frames: number of frames (>= 3).
        height, width: image size in pixels.
        seed: scene layout, camera path and noise all follow from it.
        speed: factor on the scene's base speed (`BASE_SPEED`: 0.25 m/frame driving, 0.06 indoor).
        camera_height: metres above the ground; None = middle of `CAMERA_HEIGHT_RANGE`.
        intrinsics: normalised ``(fx/W, fy/H, cx/W, cy/H)``; KITTI's by default.
        supersample: sub-pixel rays per axis at geometric edges (1 = off).
        base_speed: overrides the scene's base speed (metres per frame at speed 1).

    Returns:
        A `SyntheticSequence` with images ``(N, H, W, 3)``, depth ``(N, H, W)``, poses ``(N, 4, 4)``, K.

    Example:
        >>> seq = render_sequence("indoor", frames=3, height=24, width=32, seed=1)
        >>> seq.images.shape, seq.depth.dtype.name, seq.T_world_cam.shape
        ((3, 24, 32, 3), 'float32', (3, 4, 4))
    """
    spec = SequenceSpec(scene, seed, frames, speed, camera_height)
    renderer, T, K = _setup(spec, height, width, intrinsics, supersample, base_speed)
    images = np.empty((frames, height, width, 3), dtype=np.uint8)
    depth = np.empty((frames, height, width), dtype=np.float32)
    for i, pose in enumerate(T):
        images[i], depth[i] = renderer.render(pose)
    return SyntheticSequence(images, depth, T, K, spec)


# ------------------------------------------------------------------------------------------- datasets


def _write_sequence(root: Path, name: str, spec: SequenceSpec, options: dict, on_frame=None) -> dict:
    """Render one sequence into ``root/sequences/name`` and return its meta.yaml entry."""
    seq_dir = layout.sequence_dir(root, name)
    poses = []
    for i, image, depth, pose in iter_frames(spec, **options):
        layout.write_image(seq_dir / "images" / f"{layout.frame_name(i)}.png", image)
        layout.write_depth(seq_dir / "depth" / f"{layout.frame_name(i)}.npz", depth)
        poses.append(pose)
        if on_frame is not None:
            on_frame()
    layout.write_poses(seq_dir / "poses.txt", np.stack(poses))
    layout.write_cam(
        seq_dir / "cam.txt", intrinsics_matrix(options["height"], options["width"], options["intrinsics"])
    )
    steps = np.linalg.norm(np.diff(np.stack(poses)[:, :3, 3], axis=0), axis=-1)
    return {
        "name": name,
        "seed": int(spec.seed),
        "frames": int(spec.frames),
        # Exact floats (YAML keeps repr precision): render_sequence(**these) reproduces the sequence.
        "speed_factor": float(spec.speed),
        "speed_m_per_frame": round(spec.speed_m_per_frame(options["base_speed"]), 6),
        "mean_translation_m_per_frame": round(float(steps.mean()), 6),
        "camera_height_m": spec.resolved_height(),
    }


def _write_sequence_job(args) -> dict:
    return _write_sequence(*args)


def _render_specs(
    out,
    specs: list[tuple[str, str, SequenceSpec]],
    options: dict,
    meta: dict,
    progress: bool,
    workers: int,
    overwrite: bool,
) -> Path:
    """Render ``(name, split, spec)`` triples into a temporary folder beside ``out``, then move it there."""
    out = Path(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise InputError(
            out, "output folder already exists and is not empty (pass overwrite=True to replace it)"
        )
    # Locked while in use, so the next run can tell a killed run's leftover from a live one and delete it.
    with layout.staging_folder(out) as tmp:
        entries = _render_all(tmp, specs, options, progress, workers)
        for split in layout.SPLITS:
            items = [(name, i) for name, s, spec in specs if s == split for i in range(1, spec.frames - 1)]
            layout.write_split(tmp / "splits" / f"{split}.txt", items)
        split_of = {name: s for name, s, _ in specs}
        meta = {**meta, "sequences": [{**e, "split": split_of[e["name"]]} for e in entries]}
        import yaml

        layout.atomic_write_text(tmp / "meta.yaml", yaml.safe_dump(meta, sort_keys=False))
        layout.replace_folder(tmp, out)
    log.info("wrote %d synthetic sequences to %s", len(specs), out)
    return out


def _render_all(tmp: Path, specs, options: dict, progress: bool, workers: int) -> list[dict]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    total = sum(spec.frames for _, _, spec in specs)
    columns = (
        TextColumn("rendering"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("render", total=total)
        if workers <= 1:
            return [
                _write_sequence(tmp, name, spec, options, on_frame=lambda: bar.advance(task))
                for name, _, spec in specs
            ]
        import multiprocessing

        entries = {}
        context = multiprocessing.get_context("spawn")  # no fork: the parent may run threads (rich, torch)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            jobs = {
                pool.submit(_write_sequence_job, (tmp, name, spec, options)): name for name, _, spec in specs
            }
            for job in as_completed(jobs):
                entry = job.result()
                entries[entry["name"]] = entry
                bar.advance(task, entry["frames"])
        return [entries[name] for name, _, _ in specs]


def _split_counts(n: int, split) -> tuple[int, int, int]:
    if len(split) != 3:
        raise ValueError(f"split must give (train, val, test), got {split!r}")
    if all(isinstance(x, (int, np.integer)) for x in split):
        counts = tuple(int(x) for x in split)
        if sum(counts) != n or min(counts) < 0:
            raise ValueError(f"split counts {counts} must be >= 0 and sum to sequences={n}")
        return counts
    fractions = np.asarray(split, dtype=np.float64)
    if (fractions < 0).any() or fractions.sum() <= 0:
        raise ValueError(f"split fractions must be >= 0 with a positive sum, got {split!r}")
    fractions = fractions / fractions.sum()
    # Round half up; a split with a positive fraction gets at least one sequence while train keeps one.
    val, test = (max(int(math.floor(f * n + 0.5)), int(f > 0)) for f in fractions[1:])
    val = min(val, max(n - 1, 0)) if fractions[0] > 0 else min(val, n)
    test = min(test, max(n - 1 - val, 0)) if fractions[0] > 0 else min(test, n - val)
    return n - val - test, val, test


def _stratified_speeds(rng: np.random.Generator, n: int, speed_range) -> np.ndarray:
    """Log-uniform speed factors, one per stratum of the range, in random order."""
    lo, hi = (float(x) for x in speed_range)
    if not 0 < lo <= hi:
        raise ValueError(f"speed_range must satisfy 0 < low <= high, got {speed_range!r}")
    u = (rng.permutation(n) + rng.random(n)) / n
    return lo * (hi / lo) ** u


def _dataset_meta(scene, seed, height, width, intrinsics, supersample, base_speed, **extra) -> dict:
    return {
        "generator": "sa4depth.data.synthetic",
        "format_version": FORMAT_VERSION,
        "scene": scene,
        "seed": int(seed),
        "height": int(height),
        "width": int(width),
        "intrinsics_normalised": [float(x) for x in intrinsics],
        "supersample": int(supersample),
        "base_speed_m_per_frame": float(BASE_SPEED[scene] if base_speed is None else base_speed),
        "sky_depth": "0 = unknown (sky is infinitely far; mask it in any ground-truth warp)",
        "world_frame": "x right, y down, z forward; ground plane y = 0",
        **extra,
    }


def render_dataset(
    out: str | os.PathLike,
    scene: str = "driving",
    sequences: int = 20,
    frames: int = 100,
    height: int = 192,
    width: int = 640,
    seed: int = 0,
    split: Sequence[float] | Sequence[int] = (0.8, 0.1, 0.1),
    speed_range: tuple[float, float] = (0.5, 2.0),
    progress: bool = True,
    workers: int = 1,
    camera_height_range: tuple[float, float] | None = None,
    intrinsics: Sequence[float] = KITTI_INTRINSICS,
    supersample: int = 3,
    base_speed: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Render a synthetic dataset in the `sa4depth.data.layout` format.

    Sequences ``<scene>_000, <scene>_001, ...`` get independent seeds, log-uniform speed factors (one
    per stratum of ``speed_range``, shuffled) and uniform camera heights. The first sequences form the
    train split, then val, then test; split files list every frame with a previous and a next frame.
    Frames are written into a temporary folder beside ``out`` that is renamed at the end (one left by a
    killed run is deleted on the next).

    Args:
        out: dataset root to create (must not exist or be empty, unless ``overwrite``).
        scene: "driving" or "indoor".
        sequences, frames: how many sequences, and frames per sequence (>= 3).
        height, width: image size.
        seed: master seed; the same arguments give byte-identical files.
        split: ``(train, val, test)`` fractions of the sequences (rounded; every split with a positive
            fraction gets at least one sequence when there are enough), or counts (ints summing to
            ``sequences``).
        speed_range: range of per-sequence speed factors on `BASE_SPEED`.
        progress: show a rich progress bar.
        workers: processes rendering sequences in parallel (results do not depend on it).
        camera_height_range: metres; default `CAMERA_HEIGHT_RANGE[scene]`.
        intrinsics: normalised ``(fx/W, fy/H, cx/W, cy/H)``.
        supersample: sub-pixel rays per axis at geometric edges (1 = off).
        base_speed: metres per frame at speed factor 1 (default `BASE_SPEED[scene]`).
        overwrite: replace an existing ``out``.

    Returns:
        ``out`` as a Path.
    """
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; choose one of {', '.join(SCENES)}")
    if sequences < 1:
        raise ValueError(f"sequences must be >= 1, got {sequences}")
    counts = _split_counts(sequences, split)
    rng = np.random.default_rng(seed)
    speeds = _stratified_speeds(rng, sequences, speed_range).tolist()
    lo, hi = camera_height_range or CAMERA_HEIGHT_RANGE[scene]
    heights = rng.uniform(lo, hi, sequences).tolist()
    names = [f"{scene}_{i:03d}" for i in range(sequences)]
    splits = [s for s, c in zip(layout.SPLITS, counts, strict=True) for _ in range(c)]
    specs = [
        (names[i], splits[i], SequenceSpec(scene, _sequence_seed(seed, i), frames, speeds[i], heights[i]))
        for i in range(sequences)
    ]
    for _, _, spec in specs:
        _check_spec(spec)
    options = dict(
        height=height,
        width=width,
        intrinsics=tuple(intrinsics),
        supersample=supersample,
        base_speed=base_speed,
    )
    meta = _dataset_meta(
        scene,
        seed,
        height,
        width,
        intrinsics,
        supersample,
        base_speed,
        speed_range=[float(x) for x in speed_range],
    )
    return _render_specs(out, specs, options, meta, progress, workers, overwrite)


def _sequence_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


#: The fixed benchmark set: (split, count, frames, speed factors).
#: Train speeds are the centres of 12 log-uniform strata of 0.5x-2x, so no held-out speed is a train speed.
BENCHMARK_SPLITS = (
    ("train", 12, 60, tuple(round(0.5 * 4 ** ((i + 0.5) / 12), 4) for i in range(12))),
    ("val", 2, 40, (0.7, 1.4)),
    ("test", 4, 40, (0.5, 0.8, 1.25, 2.0)),
)
BENCHMARK_SEED = 2026


def benchmark_specs(scene: str = "driving") -> list[tuple[str, str, SequenceSpec]]:
    """The ``(name, split, spec)`` of every benchmark sequence (see `benchmark_set`)."""
    rng = np.random.default_rng(BENCHMARK_SEED)
    specs = []
    lo, hi = CAMERA_HEIGHT_RANGE[scene]
    for split, count, frames, speeds in BENCHMARK_SPLITS:
        order = rng.permutation(count)
        for j in range(count):
            spec = SequenceSpec(
                scene,
                _sequence_seed(BENCHMARK_SEED, len(specs)),
                frames,
                speeds[order[j]],
                float(rng.uniform(lo, hi)),
            )
            specs.append((f"{split}_{j:02d}", split, spec))
    return specs


def benchmark_set(
    out: str | os.PathLike,
    height: int = 96,
    width: int = 320,
    scene: str = "driving",
    progress: bool = True,
    workers: int = 1,
    overwrite: bool = False,
) -> Path:
    """Render the fixed benchmark set: 12 train x 60 frames, 2 val x 40, 4 held-out test x 40.

    Every sequence has its own street, camera height and speed: train 0.53x-1.89x (log-spaced), val 0.7x
    and 1.4x, test 0.5x, 0.8x, 1.25x and 2x the base speed (none equal to a train speed; 0.5x and 2x lie
    just outside the train range), so per-sequence scale consistency can be measured on the test split.
    Seeds are fixed (`BENCHMARK_SEED`). 960 frames: under a minute at 96 x 320 with 2 workers.
    """
    specs = benchmark_specs(scene)
    options = dict(height=height, width=width, intrinsics=KITTI_INTRINSICS, supersample=3, base_speed=None)
    meta = _dataset_meta(scene, BENCHMARK_SEED, height, width, KITTI_INTRINSICS, 3, None, benchmark=True)
    return _render_specs(out, specs, options, meta, progress, workers, overwrite)


# --------------------------------------------------------------------------------------- contact sheet


def contact_sheet(
    root: str | os.PathLike | Sequence[str | os.PathLike],
    out_png: str | os.PathLike,
    sequences: int | Sequence[str] = 3,
    frames: int = 3,
    dpi: int = 100,
) -> Path:
    """Save a grid of frames over their colour-mapped depth (inverse depth, magma; sky black) as a PNG.

    Args:
        root: a dataset root in the `layout` format (with depth), or several (their rows are stacked).
        out_png: the picture to write.
        sequences: how many sequences per root (the first ones, by name), or their names.
        frames: frames per sequence, evenly spaced.
        dpi: figure resolution; one image pixel is one picture pixel.

    Returns:
        ``out_png`` as a Path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    rows = []
    for one_root in roots:
        seq_root = Path(one_root) / "sequences"
        if not seq_root.is_dir():
            raise InputError(seq_root, "no sequences folder: not a dataset root")
        names = sorted(p.name for p in seq_root.iterdir() if p.is_dir())
        names = names[:sequences] if isinstance(sequences, int) else list(sequences)
        if not names:
            raise InputError(seq_root, "no sequences found")
        for name in names:
            images = sorted((seq_root / name / "images").glob("*.png"))
            if not images:
                raise InputError(seq_root / name / "images", "no frames found")
            tiles = []
            for i in np.linspace(0, len(images) - 1, frames).round().astype(int):
                image = layout.read_image(images[i])
                depth = layout.read_depth(seq_root / name / "depth" / f"{images[i].stem}.npz")
                known = depth > 0
                inverse = np.where(known, 1.0 / np.maximum(depth, 1e-6), 0.0)
                scale = np.percentile(inverse[known], 99) if known.any() else 1.0
                coloured = plt.get_cmap("magma")(np.clip(inverse / scale, 0, 1))[..., :3]
                coloured[~known] = 0
                tile = np.concatenate([image / 255.0, coloured], axis=0)
                tiles.append(np.pad(tile, ((0, 4), (0, 4), (0, 0)), constant_values=1.0))
            rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)[:-4, :-4]
    fig = plt.figure(figsize=(sheet.shape[1] / dpi, sheet.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(sheet, interpolation="nearest")
    ax.axis("off")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return out_png
