"""The synthetic world's ray-caster: z-buffered quads and spheres, mip-mapped textures, edge supersampling.

`_Renderer.render` gives one frame's RGB image and z-depth (sky 0) for a camera pose.
"""

from __future__ import annotations

import math

import numpy as np

from sa4depth.data.synthetic.scenes import _COLOUR, _LOG_TEXELS, _MAT, _PLANE_AXES, _Scene
from sa4depth.data.synthetic_textures import material_library

#: Depth stored for sky pixels (0 = unknown in `sa4depth.data.layout`).
SKY_DEPTH = 0.0

_NEAR = 0.05
_EDGE_CONTRAST = 0.02
_QUAD_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0]])
_CUBE_CORNERS = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=np.float64) * 2 - 1
_CUBE_EDGES = np.array([[i, i ^ bit] for i in range(8) for bit in (1, 2, 4) if i < i ^ bit])


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
