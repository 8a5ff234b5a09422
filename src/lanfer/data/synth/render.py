"""Posing, lighting and drawing a :class:`~.face.FaceModel`: projection, z-buffer, shading, background.

Pose conventions (degrees), the same as :mod:`lanfer.faces.pose` and the metadata:

* **yaw** > 0 turns the head toward the *subject's left*, so the nose moves to the *image right*; at +90
  the camera sees the subject's right cheek (KDEF's full right profile, ``FR``) and the subject's left eye
  -- the *image-right* eye of a frontal face, landmark ``right_eye`` -- is hidden.
* **pitch** > 0 raises the chin (the face looks up; the nose moves up in the picture).
* **roll** > 0 turns the face clockwise on screen (the image-right eye goes down).

The rotation is ``R = Rz(roll) Rx(pitch) Ry(yaw)`` about a pivot in the neck, followed by a mild
perspective projection (camera 10 head units away) into a square crop centred on the head, as if the face
had already been detected and aligned: the face spans ~55% of the crop width in the frontal view.

Visibility is a z-buffer over the surface samples, each splatted over as many pixels as its neighbours are
apart on screen; samples within a small depth of the front-most one are averaged (anti-aliasing inside
surfaces). A landmark is *visible* when it is inside the picture and no surface lies clearly in front of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .face import LANDMARKS, FaceModel, build_face
from .geometry import Surface
from .identity import Identity

WINDOW_HALF = 1.3  # head units from the crop's centre to its edge, at zoom 1
FACE_ANCHOR = np.array([0.0, -0.45, 0.75])  # the crop is centred on this point of the head, as posed
PIVOT = np.array([0.0, -0.5, -0.15])  # the head turns about this point (top of the neck)
CAMERA_DISTANCE = 10.0
DEPTH_TOLERANCE = 0.015  # samples this close behind the front-most one are averaged into the pixel
VISIBILITY_TOLERANCE = 0.03
PINHOLE_DEPTH = 0.05  # a pixel this much behind most of its neighbours is a hole in the front surface


@dataclass
class Scene:
    """Everything about a picture that is not the face: light, background, camera jitter, image noise.

    The defaults are a clean studio picture (frontal light from above, plain grey background, no blur or
    noise), which is what tests want; :func:`sample_scene` draws varied ones.
    """

    light: tuple[float, float, float] = (0.3, 0.5, 1.0)  # direction toward the light, camera frame (y up)
    ambient: float = 0.45
    diffuse: float = 0.65
    specular: float = 0.35
    light_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    background: str = "plain"  # "plain" or "clutter"
    background_color: tuple[float, float, float] = (0.55, 0.56, 0.58)
    background_seed: int = 0
    zoom: float = 1.0  # > 1 crops tighter
    shift: tuple[float, float] = (0.0, 0.0)  # crop offset, fraction of the crop size
    blur: float = 0.0  # Gaussian blur radius in pixels of a 256 px picture
    noise: float = 0.0  # std of additive Gaussian noise, in 0..255 levels
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.background not in ("plain", "clutter"):
            raise ValueError(f"Scene.background={self.background!r} must be 'plain' or 'clutter'")


def sample_scene(rng: np.random.Generator, background: str = "clutter") -> Scene:
    """A random scene: light from anywhere in front, coloured light, clutter, crop jitter, blur, noise."""
    light = (float(rng.uniform(-0.9, 0.9)), float(rng.uniform(-0.3, 0.9)), float(rng.uniform(0.5, 1.2)))
    warm = rng.normal(0, 0.04)
    bg = rng.uniform(0.15, 0.85, 3)
    return Scene(
        light=light, ambient=float(rng.uniform(0.3, 0.55)), diffuse=float(rng.uniform(0.45, 0.8)),
        specular=float(rng.uniform(0.1, 0.5)),
        light_color=(float(1 + warm), 1.0, float(1 - warm)),
        background=background, background_color=tuple(float(v) for v in bg),
        background_seed=int(rng.integers(2 ** 31)),
        zoom=float(rng.uniform(0.94, 1.08)), shift=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04))),
        blur=float(rng.uniform(0.0, 1.4)), noise=float(rng.uniform(0.5, 6.0)), noise_seed=int(rng.integers(2 ** 31)),
    )


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``(3, 3)`` rotation from the head frame (x subject's left, y up, z forward) to the camera frame
    (x image-right, y up, z toward the camera), conventions in the module docstring."""
    y, p, r = np.radians([yaw, pitch, roll])
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    rz = np.array([[cr, sr, 0], [-sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def transform(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``p @ m.T`` for ``(N, 3)`` points and a small ``(K, 3)`` matrix, without BLAS: BLAS would start a
    thread pool per worker process for these thin products and oversubscribe the CPUs several times."""
    out = np.empty((len(p), len(m)), dtype=np.result_type(p, m))
    for k in range(len(m)):
        out[:, k] = p[:, 0] * m[k, 0] + p[:, 1] * m[k, 1] + p[:, 2] * m[k, 2]
    return out


def pixels_per_unit(size: int, zoom: float = 1.0) -> float:
    """Output pixels per head unit in a ``size`` px picture (at the pivot's depth)."""
    return size / (2 * WINDOW_HALF) * zoom


@dataclass
class _Projection:
    u: np.ndarray
    v: np.ndarray
    z: np.ndarray
    scale: np.ndarray  # pixels per head unit at each point's depth


def _project(points: np.ndarray, rot: np.ndarray, size: int, scene: Scene) -> _Projection:
    pivot = PIVOT.astype(np.float32)
    cam = transform(points - pivot, rot) + pivot  # (N, 3) camera frame, y up
    ppu = pixels_per_unit(size, scene.zoom)
    persp = CAMERA_DISTANCE / (CAMERA_DISTANCE - cam[:, 2])
    anchor = (FACE_ANCHOR - PIVOT) @ rot.T.astype(np.float64) + PIVOT
    ap = CAMERA_DISTANCE / (CAMERA_DISTANCE - anchor[2])
    cx = anchor[0] * ap + scene.shift[0] * 2 * WINDOW_HALF / scene.zoom
    cy = anchor[1] * ap + scene.shift[1] * 2 * WINDOW_HALF / scene.zoom
    u = size / 2 + (cam[:, 0] * persp - cx) * ppu
    v = size / 2 - (cam[:, 1] * persp - cy) * ppu
    return _Projection(u.astype(np.float32), v.astype(np.float32), cam[:, 2], (ppu * persp).astype(np.float32))


def _background(size: int, scene: Scene) -> np.ndarray:
    base = np.asarray(scene.background_color, dtype=np.float32)
    if scene.background == "plain":
        yy = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        return np.broadcast_to(base * (1.05 - 0.1 * yy), (size, size, 3)).copy()
    rng = np.random.default_rng(scene.background_seed)
    grey = float(rng.uniform(0.25, 0.75))
    base = 0.5 * base + 0.5 * grey  # muted colours: an indoor scene, not a test card
    other = 0.5 * rng.uniform(0.1, 0.9, 3) + 0.5 * grey
    t = np.linspace(0, 1, size, dtype=np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    g = np.clip(0.5 + (t[None, :] - 0.5) * np.cos(ang) + (t[:, None] - 0.5) * np.sin(ang), 0, 1)[..., None]
    img = Image.fromarray(np.uint8(255 * (base * (1 - g) + other * g)))
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(6, 18))):
        col = tuple(int(0.55 * c + 0.45 * 255 * grey) for c in rng.integers(20, 235, 3)) + (int(rng.integers(90, 255)),)
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.6, 2) * size
        kind = rng.integers(4)
        if kind == 0:
            d.rectangle([x0, y0, x0 + w, y0 + h], fill=col)
        elif kind == 1:
            d.ellipse([x0, y0, x0 + w, y0 + h], fill=col)
        elif kind == 2:
            d.line([(x0, y0), (x0 + w, y0 + h)], fill=col, width=int(rng.integers(1, max(2, size // 25))))
        else:
            n_pts = int(rng.integers(3, 6))
            pts = [(float(x0 + rng.uniform(0, w)), float(y0 + rng.uniform(0, h))) for _ in range(n_pts)]
            d.polygon(pts, fill=col)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3.0) * size / 256))
    return np.asarray(img, dtype=np.float32) / 255.0


def _box3(a: np.ndarray) -> np.ndarray:
    """Sum over each pixel's 3x3 neighbourhood (zero outside the picture), separable."""
    p = np.pad(a, [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2))
    r = p[:-2] + p[1:-1] + p[2:]
    return r[:, :-2] + r[:, 1:-1] + r[:, 2:]


def render(model: FaceModel, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, size: int = 256,
           scene: Scene | None = None) -> tuple[Image.Image, dict[str, tuple[float, float, bool]]]:
    """Draw ``model`` posed at ``(yaw, pitch, roll)`` into a ``size`` x ``size`` RGB picture.

    Returns the picture and the five landmarks ``{name: (x, y, visible)}`` in pixels (x right, y down;
    names in :data:`~.face.LANDMARKS`, "left" = image-left of a frontal face = the subject's right).
    """
    scene = scene or Scene()
    rot = rotation_matrix(yaw, pitch, roll)
    rot32 = rot.astype(np.float32)
    # back-face culling in the head frame: keep samples whose normal faces the camera
    eye = (rot.T @ (np.array([0.0, 0.0, CAMERA_DISTANCE]) - PIVOT) + PIVOT).astype(np.float32)  # camera, head frame
    vis = []
    for part in model.parts:
        facing = np.einsum("ij,ij->i", part.normals, eye - part.points) > -0.05 * CAMERA_DISTANCE
        if part.outside:
            i = np.nonzero(facing)[0]
            vis.append(Surface(part.points[i], part.normals[i], part.albedo[i], part.specular[i], part.du[i],
                               part.dv[i]))
        if part.inside is not None:
            # the inner side of the face, seen only through the eye fissures and the open mouth
            j = np.nonzero(~facing)[0]
            vis.append(Surface(part.points[j], -part.normals[j],
                               np.broadcast_to(np.float32(part.inside), (len(j), 3)), np.zeros(len(j), np.float32),
                               part.du[j], part.dv[j]))
    s = Surface.concat(vis)
    pr = _project(s.points, rot32, size, scene)
    n = transform(s.normals, rot32)  # (M, 3) camera frame
    light = np.asarray(scene.light, dtype=np.float32)
    light = light / np.linalg.norm(light)
    half = light + np.array([0.0, 0.0, 1.0], dtype=np.float32)
    half /= np.linalg.norm(half)
    lam = np.clip(sum(n[:, k] * light[k] for k in range(3)), 0, None)
    amb = scene.ambient * (0.85 + 0.15 * n[:, 1])
    spec = scene.specular * s.specular * np.clip(sum(n[:, k] * half[k] for k in range(3)), 0, None) ** 20
    lc = np.asarray(scene.light_color, dtype=np.float32)
    color = (s.albedo * (amb + scene.diffuse * lam)[:, None] + spec[:, None]) * lc  # (M, 3)

    # splat each sample over kx x ky pixels: the on-screen distance to its grid neighbours
    u, v, z = pr.u, pr.v, pr.z
    du = np.abs(transform(s.du, rot32[:2]))  # (M, 2) screen extent of the neighbour vectors (head units)
    dv = np.abs(transform(s.dv, rot32[:2]))
    ext = np.maximum(du, dv) * pr.scale[:, None]
    kxy = np.clip(np.ceil(ext - 0.2), 1, 6).astype(np.int64)
    code = kxy[:, 0] * 8 + kxy[:, 1]
    us, vs, zs, cs = [u], [v], [z], [color]
    for c in np.unique(code):
        ax, ay = int(c) // 8, int(c) % 8
        if ax == 1 and ay == 1:
            continue
        sel = np.nonzero(code == c)[0]
        ox, oy = np.meshgrid(np.arange(ax) - (ax - 1) / 2, np.arange(ay) - (ay - 1) / 2)
        ox, oy = ox.ravel().astype(np.float32), oy.ravel().astype(np.float32)
        us.append((u[sel, None] + ox[None]).ravel())
        vs.append((v[sel, None] + oy[None]).ravel())
        zs.append(np.repeat(z[sel], len(ox)))
        cs.append(np.repeat(color[sel], len(ox), axis=0))
    u, v, z, color = np.concatenate(us), np.concatenate(vs), np.concatenate(zs), np.concatenate(cs)
    iu = np.floor(u).astype(np.int64)
    iv = np.floor(v).astype(np.int64)
    ok = (iu >= 0) & (iu < size) & (iv >= 0) & (iv < size)
    pix = iv[ok] * size + iu[ok]
    z, color = z[ok], color[ok]
    zbuf = np.full(size * size, -np.inf, dtype=np.float32)
    np.maximum.at(zbuf, pix, z)
    front = z >= zbuf[pix] - DEPTH_TOLERANCE
    pf = pix[front]
    cnt = np.bincount(pf, minlength=size * size).astype(np.float32)
    acc = np.stack([np.bincount(pf, weights=color[front, c], minlength=size * size) for c in range(3)], -1)
    covered = (cnt > 0).reshape(size, size)
    img = (acc / np.maximum(cnt, 1)[:, None]).astype(np.float32).reshape(size, size, 3)

    # close pinholes: a pixel that no sample of the front surface landed in shows whatever lies behind
    # (another surface, or the background) while most of its neighbours are clearly nearer; take their colour
    zg = zbuf.reshape(size, size)
    zp = np.pad(zg, 1, constant_values=-np.inf)
    cp = np.pad(img, [(1, 1), (1, 1), (0, 0)])
    n_near = np.zeros((size, size), dtype=np.float32)
    c_near = np.zeros((size, size, 3), dtype=np.float32)
    z_near = np.full((size, size), -np.inf, dtype=np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx or dy:
                zn = zp[1 + dy:1 + dy + size, 1 + dx:1 + dx + size]
                m = (zn > zg + PINHOLE_DEPTH).astype(np.float32)
                n_near += m
                c_near += cp[1 + dy:1 + dy + size, 1 + dx:1 + dx + size] * m[..., None]
                z_near = np.maximum(z_near, np.where(m > 0, zn, -np.inf))
    fill = n_near >= 5
    if fill.any():
        img = np.where(fill[..., None], c_near / np.maximum(n_near, 1)[..., None], img)
        zg = np.where(fill, z_near, zg)
        covered = covered | fill
    cov = covered.astype(np.float32)
    cnt9 = _box3(cov)
    near = np.where(covered[..., None], img, _box3(img * cov[..., None]) / np.maximum(cnt9, 1)[..., None])
    alpha = np.where(covered, np.maximum((2 * cov + cnt9 / 9) / 3, 0.85), (cnt9 / 9) / 3)[..., None]
    bg = _background(size, scene)
    out = np.clip(near, 0, 1) * alpha + bg * (1 - alpha)

    pil = Image.fromarray(np.uint8(np.clip(out, 0, 1) * 255 + 0.5))
    if scene.blur > 0.05:
        pil = pil.filter(ImageFilter.GaussianBlur(scene.blur * size / 256))
    if scene.noise > 0:
        rng = np.random.default_rng(scene.noise_seed)
        arr = np.asarray(pil, dtype=np.float32) + rng.normal(0, scene.noise, (size, size, 3)).astype(np.float32)
        pil = Image.fromarray(np.uint8(np.clip(arr + 0.5, 0, 255)))

    # landmarks
    pts = np.stack([model.landmarks[k] for k in LANDMARKS]).astype(np.float32)
    lp = _project(pts, rot32, size, scene)
    zgrid = zg
    marks = {}
    for i, name in enumerate(LANDMARKS):
        x, y = float(lp.u[i]), float(lp.v[i])
        ix, iy = int(np.floor(x)), int(np.floor(y))
        visible = False
        if 0 <= ix < size and 0 <= iy < size:
            # visible when, in some pixel of its 3x3 neighbourhood, nothing lies clearly in front of it
            # (pixels of background do not count: near a silhouette they would make anything visible);
            # a grazing surface advances about a pixel in depth per pixel across, hence the tolerance
            tol = VISIBILITY_TOLERANCE + 1.0 / float(lp.scale[i])
            win = zgrid[max(iy - 1, 0):iy + 2, max(ix - 1, 0):ix + 2]
            win = win[np.isfinite(win)]
            visible = bool(win.size == 0 or (lp.z[i] >= win - tol).any())
        marks[name] = (x, y, visible)
    return pil, marks


@dataclass
class FaceParams:
    """A face to draw: who (:class:`~.identity.Identity`), which action units (``{au: (left, right)}`` or
    ``{au: intensity}``), and the :class:`Scene` around it."""

    identity: Identity = field(default_factory=Identity)
    aus: dict = field(default_factory=dict)
    scene: Scene = field(default_factory=Scene)


def normalize_aus(aus: dict) -> dict:
    """Accept ``{au: v}`` (both sides) or ``{au: (left, right)}``; check AU numbers and ranges."""
    from .expressions import AU_NAMES

    out = {}
    for au, v in aus.items():
        au = int(au)
        if au not in AU_NAMES:
            raise ValueError(f"AU{au} is not rendered; supported: {', '.join(f'AU{a}' for a in AU_NAMES)}")
        left, right = (v, v) if np.isscalar(v) else v
        if not (0 <= left <= 1 and 0 <= right <= 1):
            raise ValueError(f"AU{au} intensity {v!r} must be in [0, 1]")
        out[au] = (float(left), float(right))
    return out


def render_face(params: FaceParams, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, size: int = 256
                ) -> tuple[Image.Image, dict[str, tuple[float, float, bool]]]:
    """Build and draw one face: ``(PIL.Image, {landmark: (x, y, visible)})``.

    Landmarks (pixels, x right, y down): ``left_eye``, ``right_eye`` (pupil centres), ``nose`` (tip),
    ``mouth_left``, ``mouth_right`` (lip corners), where "left" is the *image-left* side of a frontal
    face -- the subject's right -- as in MTCNN. Pose conventions: module docstring.
    """
    if size < 16:
        raise ValueError(f"size={size}: pictures smaller than 16 px cannot show a face")
    model = build_face(params.identity, normalize_aus(params.aus), pixels_per_unit(size, params.scene.zoom))
    return render(model, yaw, pitch, roll, size, params.scene)
