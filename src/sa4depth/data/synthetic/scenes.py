"""The synthetic world's scenes: streets and rooms as axis-aligned textured quads and spheres.

`_driving_scene` and `_indoor_scene` lay out one scene from a seed; `_Scene` packs it for the ray-caster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sa4depth.data.synthetic_textures import TEXTURE_SIZE, material_library, picture_names

SCENES = ("driving", "indoor")

_PLANE_AXES = ((1, 2), (0, 2), (0, 1))  # the two in-plane axes of a quad whose normal is along axis 0, 1, 2
# Rows of `_Scene.quad_shade`.
_U, _V, _N, _LOG_TEXELS, _MAT, _COLOUR = slice(0, 4), slice(4, 8), slice(8, 11), 11, 12, slice(13, 16)


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
    """A straight street along +z, up to ``z_last`` metres.

    Road with markings, kerbs and sidewalks, parked cars, poles, trees, hedges, building rows at varying
    setbacks, a second row behind, and a cross street closing the view.
    """
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
    """A closed room with furniture.

    Floor, ceiling and walls with pictures, a door, windows, baseboards and furniture (cabinets,
    bookshelves, sofas, desks, plants) along the walls, and a table on a rug in the middle.
    """
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
