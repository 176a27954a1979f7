"""Surface materials for the synthetic world: photo textures from `skimage.data`, mip-mapped in one atlas.

Every texture is 256 x 256 texels and tiles a fixed number of metres, so it sticks to world surfaces.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

TEXTURE_SIZE = 256
_LEVELS = TEXTURE_SIZE.bit_length()  # 256, 128, ..., 1
# Fixed, so the material library (and therefore every rendered frame) never depends on the scene seed.
_TEXTURE_SEED = 20240611


@dataclass(frozen=True)
class MaterialLibrary:
    """All materials as one flat mip-map atlas, so a single gather samples any material at any level.

    Attributes:
        names: material names; a material's index is its position here.
        metres: ``(M,)`` size in metres that one texture tile covers (both directions).
        atlas: ``(3 * M * stride,)`` float32 albedo in [0, 1], three channel planes one after the other;
            material ``m`` level ``l`` texel ``(row, col)`` of channel ``c`` is at
            ``c * M * stride + m * stride + level_offset[l] + row * (256 >> l) + col``.
        level_offset: ``(levels,)`` start of each mip level inside one material's block.
        stride: texels per material (all levels).
        aspect: width / height of each picture's source photo (pictures are placed at that aspect).
    """

    names: tuple[str, ...]
    metres: np.ndarray
    atlas: np.ndarray
    level_offset: np.ndarray
    stride: int
    aspect: dict[str, float]

    @property
    def levels(self) -> int:
        return len(self.level_offset)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def sample(
        self, mat: np.ndarray, u: np.ndarray, v: np.ndarray, lod: np.ndarray, trilinear: bool = True
    ) -> np.ndarray:
        """Trilinear (mip-mapped, wrapping) texture lookup, or bilinear on the nearest level.

        Args:
            mat: ``(N,)`` int material indices.
            u: ``(N,)`` float32 texel column at level 0; texel ``i`` covers ``[i, i + 1)``, and the
                texture repeats every 256 texels.
            v: ``(N,)`` float32 texel row at level 0, as ``u``.
            lod: ``(N,)`` float32 mip level (0 = full resolution), clipped to the pyramid.
            trilinear: blend the two nearest levels; False samples the nearest level bilinearly.

        Returns:
            ``(3, N)`` float32 albedo (channel planes: numpy is much faster on long rows than on
            ``(N, 3)`` arrays broadcast against ``(N, 1)`` weights).
        """
        lod = np.clip(lod, 0.0, self.levels - 1.0)
        base = mat.astype(np.int64) * self.stride
        if not trilinear:
            return self._bilinear(base, (lod + 0.5).astype(np.int32), u, v)
        level0 = np.minimum(lod.astype(np.int32), self.levels - 2)
        frac = lod - level0
        low = self._bilinear(base, level0, u, v)
        high = self._bilinear(base, level0 + 1, u, v)
        high -= low
        high *= frac
        low += high
        return low

    def _bilinear(self, base: np.ndarray, level: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        size = TEXTURE_SIZE >> level
        scale = _LEVEL_SCALE[level]
        # Texel centres sit at i + 0.5, so bilinear weights come from the coordinate minus a half.
        x = u * scale - 0.5
        y = v * scale - 0.5
        x0f = np.floor(x)
        y0f = np.floor(y)
        fx = x - x0f
        fy = y - y0f
        mask = size - 1  # sizes are powers of two: "& mask" is a wrapping modulo, also for negatives
        x0 = x0f.astype(np.int32) & mask
        y0 = y0f.astype(np.int32) & mask
        x1 = (x0 + 1) & mask
        y1 = (y0 + 1) & mask
        start = base + self.level_offset[level]
        row0 = start + y0 * size
        row1 = start + y1 * size
        planes, channel = self.atlas, self._channel_offset

        def fetch(index):  # one gather for all three channels: (3, N)
            return np.take(planes, index + channel)

        top = fetch(row0 + x0)
        top += (fetch(row0 + x1) - top) * fx
        bottom = fetch(row1 + x0)
        bottom += (fetch(row1 + x1) - bottom) * fx
        bottom -= top
        bottom *= fy
        top += bottom
        return top

    @property
    def _channel_offset(self) -> np.ndarray:
        return np.arange(3, dtype=np.int64)[:, None] * (len(self.atlas) // 3)


_LEVEL_SCALE = np.ldexp(np.float32(1.0), -np.arange(16)).astype(np.float32)


def _photo(name: str) -> np.ndarray:
    """A `skimage.data` image resized to 256 x 256, float32 in [0, 1], ``H x W`` or ``H x W x 3``."""
    return _resize(_load(name))


def _load(name: str) -> np.ndarray:
    import skimage.data

    return np.asarray(getattr(skimage.data, name)())


def _resize(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = image[..., :3]
    resized = Image.fromarray(image).resize((TEXTURE_SIZE, TEXTURE_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.float32) / 255.0


def _gray(name: str) -> np.ndarray:
    image = _photo(name)
    return image @ np.float32([0.299, 0.587, 0.114]) if image.ndim == 3 else image


def _seamless(gray: np.ndarray, band: int = 40) -> np.ndarray:
    """Hide the tile seam by cross-fading into a half-shifted copy near the tile border."""
    ramp = np.clip(
        np.minimum(np.arange(TEXTURE_SIZE), TEXTURE_SIZE - 1 - np.arange(TEXTURE_SIZE)) / band, 0, 1
    )
    weight = np.minimum.outer(ramp, ramp).astype(np.float32)
    weight = weight * weight * (3 - 2 * weight)
    shifted = np.roll(gray, (TEXTURE_SIZE // 2, TEXTURE_SIZE // 2), axis=(0, 1))
    return weight * gray + (1 - weight) * shifted


def _colourise(gray: np.ndarray, tint, contrast: float) -> np.ndarray:
    """Albedo ``tint * (1 + contrast * normalised detail)`` from a grey texture, ``H x W x 3``."""
    detail = (gray - gray.mean()) / (gray.std() + 1e-6)
    shade = 1.0 + contrast * np.tanh(detail / 2.0)
    return np.clip(shade[..., None] * np.float32(tint), 0.0, 1.0)


def _box(t: np.ndarray, rows: tuple[float, float], cols: tuple[float, float], colour) -> None:
    """Paint a rectangle given in tile fractions."""
    r0, r1 = (int(round(f * TEXTURE_SIZE)) for f in rows)
    c0, c1 = (int(round(f * TEXTURE_SIZE)) for f in cols)
    t[r0:r1, c0:c1] = colour


def _with_windows(wall: np.ndarray, rng: np.random.Generator, columns: int, glass, frame) -> np.ndarray:
    """A facade tile (one storey high): ``columns`` windows with frames, sills and a glass gradient."""
    t = wall.copy()
    width = 1.0 / columns
    for k in range(columns):
        left, right = k * width + 0.22 * width, (k + 1) * width - 0.22 * width
        _box(t, (0.22, 0.74), (left - 0.03, right + 0.03), frame)
        _box(t, (0.74, 0.78), (left - 0.05, right + 0.05), np.float32(frame) * 0.85)
        r0, r1 = int(0.25 * TEXTURE_SIZE), int(0.71 * TEXTURE_SIZE)
        c0, c1 = int(round(left * TEXTURE_SIZE)), int(round(right * TEXTURE_SIZE))
        gradient = np.linspace(1.25, 0.7, r1 - r0, dtype=np.float32)[:, None, None]
        reflection = 1.0 + 0.15 * rng.standard_normal((1, c1 - c0, 1)).astype(np.float32).cumsum(1) / 6
        t[r0:r1, c0:c1] = np.clip(np.float32(glass) * gradient * reflection, 0, 1)
        _box(t, (0.47, 0.49), (left, right), frame)  # transom bar
    return t


def _planks(rng: np.random.Generator, grain: np.ndarray, tint, planks: int = 8) -> np.ndarray:
    """Wooden boards along the tile's u axis: streaky grain, per-board shade, dark joints."""
    streaks = np.asarray(
        Image.fromarray(grain)
        .resize((TEXTURE_SIZE, 24), Image.Resampling.BOX)
        .resize((TEXTURE_SIZE, TEXTURE_SIZE), Image.Resampling.BILINEAR),
        dtype=np.float32,
    ).T
    wood = _colourise(streaks, tint, 0.35)
    board = TEXTURE_SIZE // planks
    for k in range(planks):
        wood[k * board : (k + 1) * board] *= np.float32(0.85 + 0.3 * rng.random())
        wood[k * board : k * board + 2] *= np.float32(0.45)
    return np.clip(wood, 0, 1)


def _books(rng: np.random.Generator, noise: np.ndarray) -> np.ndarray:
    """A bookshelf: four shelf boards with rows of coloured spines of random width and height."""
    t = np.empty((TEXTURE_SIZE, TEXTURE_SIZE, 3), np.float32)
    t[:] = np.float32([0.16, 0.11, 0.08])
    shelf = TEXTURE_SIZE // 4
    for s in range(4):
        top = s * shelf
        col = 0
        while col < TEXTURE_SIZE:
            w = int(rng.integers(5, 14))
            h = int(rng.integers(int(0.55 * shelf), shelf - 8))
            colour = rng.uniform(0.1, 0.85, 3).astype(np.float32)
            t[top + shelf - 6 - h : top + shelf - 6, col : col + w - 1] = colour
            col += w
        t[top + shelf - 6 : top + shelf] = np.float32([0.45, 0.3, 0.18])
    return np.clip(t * (0.85 + 0.3 * noise[..., None]), 0, 1)


def _grid_tiles(noise: np.ndarray, tint, tiles: int, rng: np.random.Generator) -> np.ndarray:
    t = _colourise(noise, tint, 0.15)
    step = TEXTURE_SIZE // tiles
    for r in range(tiles):
        for c in range(tiles):
            t[r * step : (r + 1) * step, c * step : (c + 1) * step] *= np.float32(0.9 + 0.2 * rng.random())
    t[::step] *= 0.55
    t[:, ::step] *= 0.55
    return np.clip(t, 0, 1)


def _gradient(top, bottom) -> np.ndarray:
    ramp = np.linspace(0, 1, TEXTURE_SIZE, dtype=np.float32)[:, None, None]
    return np.broadcast_to(np.float32(top) + (np.float32(bottom) - np.float32(top)) * ramp, (256, 256, 3))


def _build_textures() -> dict[str, tuple[np.ndarray, float]]:
    """Name -> (256 x 256 x 3 albedo, metres per tile). Fixed content, independent of any scene seed."""
    rng = np.random.default_rng(_TEXTURE_SEED)
    gravel = _seamless(_gray("gravel"))
    grass = _seamless(_gray("grass"))
    moon = _seamless(_gray("moon"))
    brick = _gray("brick")
    grain = (_gray("grass") * 255).astype(np.uint8)

    plaster = _colourise(gravel, (0.82, 0.76, 0.64), 0.12)
    concrete = _colourise(moon, (0.62, 0.62, 0.6), 0.35)
    red_brick = _colourise(brick, (0.62, 0.36, 0.27), 0.45)
    glass = (0.16, 0.22, 0.3)
    office = np.empty((TEXTURE_SIZE, TEXTURE_SIZE, 3), np.float32)
    office[:] = np.float32([0.55, 0.57, 0.6])
    for k in range(2):
        lo, hi = 0.05 + 0.5 * k, 0.45 + 0.5 * k
        _box(office, (0.08, 0.9), (lo, hi), glass)
    office = np.clip(office * (0.9 + 0.2 * moon[..., None]), 0, 1)
    textures = {
        # street
        "asphalt": (_colourise(gravel, (0.3, 0.3, 0.31), 0.55), 3.0),
        "marking": (_colourise(gravel, (0.86, 0.86, 0.82), 0.12), 3.0),
        "verge": (_colourise(grass, (0.33, 0.45, 0.2), 0.7), 2.0),
        "paving": (_colourise(brick, (0.6, 0.58, 0.55), 0.35), 2.5),
        "kerb": (concrete, 2.0),
        "facade_brick": (_with_windows(red_brick, rng, 2, glass, (0.85, 0.84, 0.8)), 3.2),
        "facade_plaster": (_with_windows(plaster, rng, 2, glass, (0.35, 0.3, 0.26)), 3.0),
        "facade_concrete": (_with_windows(concrete, rng, 3, glass, (0.7, 0.7, 0.72)), 3.6),
        "facade_office": (office, 3.4),
        "wall_brick": (red_brick, 2.0),
        "roof": (_colourise(gravel, (0.25, 0.22, 0.22), 0.4), 4.0),
        "car_paint": (_colourise(gravel, (0.8, 0.8, 0.8), 0.06), 2.0),
        "car_glass": (_gradient((0.32, 0.38, 0.45), (0.08, 0.1, 0.12)), 1.0),
        "tyre": (_colourise(gravel, (0.1, 0.1, 0.1), 0.3), 1.0),
        "bark": (_colourise(grass, (0.32, 0.24, 0.17), 0.6), 1.0),
        "foliage": (_colourise(grass, (0.2, 0.34, 0.12), 0.9), 1.5),
        "hedge": (_colourise(_seamless(_gray("grass")[::-1]), (0.17, 0.3, 0.11), 0.8), 1.2),
        "metal": (_colourise(moon, (0.5, 0.52, 0.55), 0.15), 1.0),
        # indoor
        "paint": (_colourise(gravel, (0.86, 0.84, 0.8), 0.05), 2.0),
        "ceiling": (_colourise(gravel, (0.9, 0.9, 0.88), 0.04), 2.0),
        "wood_floor": (_planks(rng, grain, (0.55, 0.38, 0.22)), 1.6),
        "wood": (_planks(rng, grain, (0.48, 0.32, 0.2), planks=4), 1.0),
        "tiles": (_grid_tiles(gravel, (0.75, 0.73, 0.7), 4, rng), 1.2),
        "carpet": (_colourise(gravel, (0.45, 0.35, 0.3), 0.25), 1.0),
        "fabric": (_colourise(grass, (0.7, 0.7, 0.7), 0.2), 0.8),
        "books": (_books(rng, gravel), 1.0),
        "window": (_gradient((0.8, 0.88, 0.98), (0.62, 0.72, 0.85)), 1.0),
    }
    return textures


#: Photos used as pictures: shop signs, posters and paintings.
_PICTURES = (
    "rocket",
    "coffee",
    "astronaut",
    "chelsea",
    "camera",
    "hubble_deep_field",
    "coins",
    "immunohistochemistry",
)


def _build_pictures() -> tuple[dict[str, tuple[np.ndarray, float]], dict[str, float]]:
    """Pictures (one tile = the whole photo; placement sets its size) and their width / height."""
    textures, aspect = {}, {}
    for name in _PICTURES:
        raw = _load(name)
        image = _resize(raw)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        textures[f"picture_{name}"] = (image, 1.0)
        aspect[f"picture_{name}"] = raw.shape[1] / raw.shape[0]
    return textures, aspect


def _mip_levels(texture: np.ndarray) -> list[np.ndarray]:
    """2 x 2 box-filtered pyramid down to 1 x 1, matching the texel-centre convention of `sample`."""
    levels = [texture.astype(np.float32)]
    while levels[-1].shape[0] > 1:
        t = levels[-1]
        levels.append(0.25 * (t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2]))
    return levels


@functools.cache
def material_library() -> MaterialLibrary:
    """The shared material library (built once per process, ~0.5 s)."""
    pictures, aspect = _build_pictures()
    textures = {**_build_textures(), **pictures}
    sizes = [TEXTURE_SIZE >> level for level in range(_LEVELS)]
    level_offset = np.concatenate([[0], np.cumsum([s * s for s in sizes])[:-1]]).astype(np.int64)
    stride = int(sum(s * s for s in sizes))
    blocks = []
    for texture, _ in textures.values():
        blocks.extend(level.reshape(-1, 3) for level in _mip_levels(np.ascontiguousarray(texture)))
    atlas = np.ascontiguousarray(np.concatenate(blocks).T, dtype=np.float32).reshape(-1)
    atlas.flags.writeable = False
    metres = np.array([m for _, m in textures.values()], dtype=np.float64)
    return MaterialLibrary(tuple(textures), metres, atlas, level_offset, stride, aspect)


def picture_names() -> tuple[str, ...]:
    """The names of the library's picture materials (``picture_*``), for frames hung on walls."""
    return tuple(n for n in material_library().names if n.startswith("picture_"))
