"""Build a Blender scene from a ``dataset.spec`` description.

Everything is created with bpy.data (no operators), in a scene of its own, and
every datablock made is tracked so :meth:`BuiltScene.remove` leaves the user's
file exactly as it was (the add-on runs this inside their session).
"""

from __future__ import annotations

import math
import os
from typing import Any

import bmesh
import bpy
from mathutils import Euler, Matrix

from ...core.errors import DenoiseError
from .. import compat

SCENE_NAME = "AI Denoise Dataset"
_COLLECTIONS = (
    "objects",
    "meshes",
    "curves",
    "materials",
    "lights",
    "cameras",
    "worlds",
    "textures",
    "images",
    "node_groups",
    "collections",
    "scenes",
)


def hdri_dir() -> str:
    return os.path.join(bpy.utils.system_resource("DATAFILES"), "studiolights", "world")


def _snapshot() -> set[int]:
    return {idb.session_uid for name in _COLLECTIONS for idb in getattr(bpy.data, name)}


class BuiltScene:
    """A built scene plus what it takes to remove it again."""

    def __init__(self, scene: bpy.types.Scene, before: set[int]) -> None:
        self.scene = scene
        self._before = before

    def remove(self) -> None:
        new = [idb for name in _COLLECTIONS for idb in getattr(bpy.data, name) if idb.session_uid not in self._before]
        if new:
            bpy.data.batch_remove(new)


# ---------------------------------------------------------------------------
# Meshes


def _torus(bm: bmesh.types.BMesh, major: float = 0.75, minor: float = 0.25, seg: int = 32, ring: int = 12) -> None:
    verts = []
    for i in range(seg):
        a = 2 * math.pi * i / seg
        for j in range(ring):
            b = 2 * math.pi * j / ring
            r = major + minor * math.cos(b)
            verts.append(bm.verts.new((r * math.cos(a), r * math.sin(a), minor * math.sin(b))))
    for i in range(seg):
        for j in range(ring):
            a, b = i * ring + j, i * ring + (j + 1) % ring
            c, d = ((i + 1) % seg) * ring + (j + 1) % ring, ((i + 1) % seg) * ring + j
            bm.faces.new((verts[a], verts[d], verts[c], verts[b]))


def _primitive_mesh(name: str, shape: str, smooth: bool) -> bpy.types.Mesh:
    bm = bmesh.new()
    if shape == "cube":
        bmesh.ops.create_cube(bm, size=2.0)
    elif shape == "uv_sphere":
        bmesh.ops.create_uvsphere(bm, u_segments=48, v_segments=24, radius=1.0)
    elif shape == "ico_sphere":
        bmesh.ops.create_icosphere(bm, subdivisions=3, radius=1.0)
    elif shape == "cylinder":
        bmesh.ops.create_cone(bm, cap_ends=True, segments=48, radius1=1.0, radius2=1.0, depth=2.0)
    elif shape == "cone":
        bmesh.ops.create_cone(bm, cap_ends=True, segments=48, radius1=1.0, radius2=0.0, depth=2.0)
    elif shape == "torus":
        _torus(bm)
    elif shape == "monkey":
        bmesh.ops.create_monkey(bm)
    elif shape == "plane":
        bmesh.ops.create_grid(bm, x_segments=1, y_segments=1, size=1.0)
    else:
        raise DenoiseError(f"unknown primitive {shape!r}")
    for f in bm.faces:
        f.smooth = smooth
    me = bpy.data.meshes.new(name)
    bm.to_mesh(me)
    bm.free()
    return me


def _quads_mesh(name: str, quads: list[list[tuple[float, float, float]]]) -> bpy.types.Mesh:
    verts: list[tuple[float, float, float]] = []
    faces = []
    for q in quads:
        faces.append(tuple(range(len(verts), len(verts) + len(q))))
        verts += q
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts, [], faces)
    me.update()
    return me


def _wall_quads(
    corner: tuple[float, float, float], u: tuple[float, float, float], v: tuple[float, float, float], opening: Any
) -> list[list[tuple[float, float, float]]]:
    """A wall (corner + u, v edge vectors), minus a rectangular opening in (u, v) fractions."""

    def rect(u0: float, u1: float, v0: float, v1: float) -> list[tuple[float, float, float]]:
        pts = [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]
        return [tuple(corner[k] + a * u[k] + b * v[k] for k in range(3)) for a, b in pts]  # type: ignore[misc]

    if not opening:
        return [rect(0, 1, 0, 1)]
    u0, u1, v0, v1 = opening
    return [rect(0, u0, 0, 1), rect(u1, 1, 0, 1), rect(u0, u1, 0, v0), rect(u0, u1, v1, 1)]


def _room_mesh(name: str, room: dict[str, Any]) -> tuple[bpy.types.Mesh, bpy.types.Mesh]:
    w, d, h = room["size"]
    x0, x1, y0, y1 = -w / 2, w / 2, -d / 2, d / 2
    frames = {
        "x+": ((x1, y0, 0.0), (0.0, d, 0.0), (0.0, 0.0, h)),
        "x-": ((x0, y0, 0.0), (0.0, d, 0.0), (0.0, 0.0, h)),
        "y+": ((x0, y1, 0.0), (w, 0.0, 0.0), (0.0, 0.0, h)),
        "y-": ((x0, y0, 0.0), (w, 0.0, 0.0), (0.0, 0.0, h)),
        "ceiling": ((x0, y0, h), (w, 0.0, 0.0), (0.0, d, 0.0)),
    }
    quads = []
    for wall in room["walls"]:
        origin, u, v = frames[wall["wall"]]
        quads += _wall_quads(origin, u, v, wall["opening"])
    floor = _quads_mesh(name + " floor", [[(x0, y0, 0.0), (x1, y0, 0.0), (x1, y1, 0.0), (x0, y1, 0.0)]])
    return _quads_mesh(name, quads), floor


def _backdrop_mesh(name: str, size: float) -> bpy.types.Mesh:
    """Photo-studio cyclorama: a floor that bends up into a back wall."""
    radius = 0.3 * size
    profile = [(-size, 0.0), (size * 0.2, 0.0)]
    for i in range(1, 13):
        a = math.pi / 2 * i / 12
        profile.append((size * 0.2 + radius * math.sin(a), radius * (1 - math.cos(a))))
    profile.append((size * 0.2 + radius, size))
    verts = [(x, y, z) for x in (-size, size) for y, z in profile]
    n = len(profile)
    faces = [(i, i + 1, n + i + 1, n + i) for i in range(n - 1)]
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts, [], faces)
    for p in me.polygons:
        p.use_smooth = True
    me.update()
    return me


# ---------------------------------------------------------------------------
# Materials

_TEX_NODES = {
    "noise": "ShaderNodeTexNoise",
    "voronoi": "ShaderNodeTexVoronoi",
    "checker": "ShaderNodeTexChecker",
    "brick": "ShaderNodeTexBrick",
    "wave": "ShaderNodeTexWave",
    "gradient": "ShaderNodeTexGradient",
    "magic": "ShaderNodeTexMagic",
}


def _texture_fac(nt: bpy.types.NodeTree, tex: dict[str, Any], scale_mult: float = 1.0) -> bpy.types.NodeSocket:
    """Generated coords -> mapping (rotation, scale) -> procedural texture; its scalar output."""
    coord = nt.nodes.new("ShaderNodeTexCoord")
    mapping = nt.nodes.new("ShaderNodeMapping")
    mapping.inputs["Rotation"].default_value = tex["rotation"]
    s = tex["scale"] * scale_mult
    mapping.inputs["Scale"].default_value = (s, s, s)
    nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    node = nt.nodes.new(_TEX_NODES[tex["type"]])
    kind = tex["type"]
    if kind == "voronoi":
        node.feature = tex["voronoi_feature"]
    elif kind == "wave":
        node.wave_type = tex["wave_type"]
    elif kind == "gradient":
        node.gradient_type = tex["gradient_type"]
    for key, sock in (("detail", "Detail"), ("distortion", "Distortion"), ("roughness", "Roughness")):
        if sock in node.inputs and kind in ("noise", "wave", "magic", "voronoi"):
            node.inputs[sock].default_value = tex[key]
    if "Scale" in node.inputs:
        node.inputs["Scale"].default_value = 1.0
    nt.links.new(mapping.outputs["Vector"], node.inputs["Vector"])
    return node.outputs["Fac"] if "Fac" in node.outputs else node.outputs[0]


def make_material(name: str, m: dict[str, Any], scale_mult: float = 1.0) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    nt = compat.node_tree(mat)
    bsdf = nt.nodes["Principled BSDF"]
    inp = bsdf.inputs
    inp["Base Color"].default_value = (*m["base_color"], 1.0)
    inp["Roughness"].default_value = m["roughness"]
    inp["Metallic"].default_value = m["metallic"]
    inp["IOR"].default_value = m["ior"]
    inp["Transmission Weight"].default_value = m["transmission"]
    inp["Subsurface Weight"].default_value = m["subsurface"]
    inp["Subsurface Radius"].default_value = m["subsurface_radius"]
    inp["Subsurface Scale"].default_value = m["subsurface_scale"]
    inp["Coat Weight"].default_value = m["coat"]
    inp["Coat Roughness"].default_value = m["coat_roughness"]
    inp["Sheen Weight"].default_value = m["sheen"]
    inp["Sheen Roughness"].default_value = m["sheen_roughness"]
    inp["Specular IOR Level"].default_value = m["specular"]
    inp["Anisotropic"].default_value = m["anisotropic"]
    inp["Emission Color"].default_value = (*m["emission_color"], 1.0)
    inp["Emission Strength"].default_value = m["emission_strength"]
    for tex in m["textures"]:
        fac = _texture_fac(nt, tex, scale_mult)
        if "base_color" in tex["target"]:
            ramp = nt.nodes.new("ShaderNodeValToRGB")
            ramp.color_ramp.elements[0].color = (*m["base_color"], 1.0)
            ramp.color_ramp.elements[1].color = (*tex["color2"], 1.0)
            nt.links.new(fac, ramp.inputs["Fac"])
            nt.links.new(ramp.outputs["Color"], inp["Base Color"])
        if "roughness" in tex["target"]:
            rng = nt.nodes.new("ShaderNodeMapRange")
            rng.inputs["To Min"].default_value = m["roughness"] * 0.3
            rng.inputs["To Max"].default_value = min(1.0, m["roughness"] + 0.4)
            nt.links.new(fac, rng.inputs["Value"])
            nt.links.new(rng.outputs["Result"], inp["Roughness"])
    if m["bump"]:
        fac = _texture_fac(nt, m["bump"], scale_mult)
        bump = nt.nodes.new("ShaderNodeBump")
        bump.inputs["Strength"].default_value = m["bump"]["strength"]
        bump.inputs["Distance"].default_value = m["bump"]["distance"]
        nt.links.new(fac, bump.inputs["Height"])
        nt.links.new(bump.outputs["Normal"], inp["Normal"])
    return mat


def _volume_material(name: str, vol: dict[str, Any]) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    nt = compat.node_tree(mat)
    nt.nodes.remove(nt.nodes["Principled BSDF"])
    node = nt.nodes.new("ShaderNodeVolumePrincipled")
    node.inputs["Color"].default_value = (*vol["color"], 1.0)
    node.inputs["Density"].default_value = vol["density"]
    node.inputs["Anisotropy"].default_value = vol["anisotropy"]
    nt.links.new(node.outputs["Volume"], nt.nodes["Material Output"].inputs["Volume"])
    return mat


# ---------------------------------------------------------------------------
# Scene


def _link(scene: bpy.types.Scene, name: str, data: Any, loc: Any = (0, 0, 0), rot: Any = (0, 0, 0)) -> bpy.types.Object:
    ob = bpy.data.objects.new(name, data)
    ob.location = loc
    ob.rotation_euler = rot
    scene.collection.objects.link(ob)
    return ob


def _world(scene: bpy.types.Scene, w: dict[str, Any]) -> None:
    world = bpy.data.worlds.new("AI Denoise World")
    scene.world = world
    nt = compat.node_tree(world)
    bg = nt.nodes["Background"]
    if w["type"] == "hdri":
        path = os.path.join(hdri_dir(), w["hdri"])
        if not os.path.isfile(path):
            raise DenoiseError(f"Blender's bundled HDRI is missing: {path}")
        env = nt.nodes.new("ShaderNodeTexEnvironment")
        env.image = bpy.data.images.load(path, check_existing=True)
        coord = nt.nodes.new("ShaderNodeTexCoord")
        mapping = nt.nodes.new("ShaderNodeMapping")
        mapping.inputs["Rotation"].default_value = (0.0, 0.0, w["rotation"])
        nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
        nt.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
        nt.links.new(env.outputs["Color"], bg.inputs["Color"])
        bg.inputs["Strength"].default_value = w["strength"]
    elif w["type"] == "color":
        bg.inputs["Color"].default_value = (*w["color"], 1.0)
        bg.inputs["Strength"].default_value = w["strength"]
    else:
        bg.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
        bg.inputs["Strength"].default_value = 0.0


def _light(scene: bpy.types.Scene, i: int, lt: dict[str, Any]) -> None:
    data = bpy.data.lights.new(f"AI Denoise Light {i}", lt["type"])
    data.energy = lt["energy"]
    data.color = lt["color"]
    if lt["type"] == "AREA":
        data.shape = lt["shape"]
        data.size = lt["size"]
        data.size_y = lt["size_y"]
    elif lt["type"] == "SUN":
        data.angle = lt["sun_angle"]
    else:
        data.shadow_soft_size = lt["size"] * 0.3
        if lt["type"] == "SPOT":
            data.spot_size = lt["spot_size"]
            data.spot_blend = lt["spot_blend"]
    _link(scene, data.name, data, lt["location"], lt["rotation"])


def build_scene(spec: dict[str, Any]) -> BuiltScene:
    """Create a new scene from ``spec``. Render settings are set by the caller."""
    before = _snapshot()
    scene = bpy.data.scenes.new(SCENE_NAME)
    built = BuiltScene(scene, before)
    try:
        _populate(scene, spec)
    except Exception:
        built.remove()
        raise
    return built


def _populate(scene: bpy.types.Scene, spec: dict[str, Any]) -> None:
    mats = [make_material(f"AI Denoise Mat {i}", m) for i, m in enumerate(spec["materials"])]
    _world(scene, spec["world"])
    for i, ob in enumerate(spec["objects"]):
        name = f"AI Denoise Obj {i}"
        if ob["kind"] == "text":
            curve = bpy.data.curves.new(name, "FONT")
            curve.body = ob["body"]
            curve.align_x = "CENTER"
            curve.extrude = ob["extrude"]
            curve.bevel_depth = ob["bevel"]
            data: Any = curve
        else:
            data = _primitive_mesh(name, ob["shape"], ob["smooth"])
        data.materials.append(mats[ob["material"]])
        o = _link(scene, name, data, ob["location"], ob["rotation"])
        o.scale = ob["scale"]
        if ob["kind"] == "primitive":
            if ob["bevel"]:
                mod = o.modifiers.new("Bevel", "BEVEL")
                mod.width = ob["bevel"]
                mod.segments = 3
            if ob["subdivision"]:
                mod = o.modifiers.new("Subdivision", "SUBSURF")
                mod.levels = mod.render_levels = ob["subdivision"]
            if ob["displace"]:
                dsp = ob["displace"]
                tex = bpy.data.textures.new(name, dsp["type"])
                tex.noise_scale = dsp["noise_scale"]
                mod = o.modifiers.new("Displace", "DISPLACE")
                mod.texture = tex
                mod.texture_coords = "LOCAL"
                mod.strength = dsp["strength"]
    if spec["ground"]:
        g = spec["ground"]
        mat = make_material("AI Denoise Ground", spec["materials"][g["material"]], scale_mult=4.0)
        if g.get("backdrop"):
            me = _backdrop_mesh("AI Denoise Backdrop", g["size"])
            rot = (0.0, 0.0, g["rotation"])
        else:
            me = _quads_mesh(
                "AI Denoise Ground",
                [
                    [
                        (-g["size"], -g["size"], 0.0),
                        (g["size"], -g["size"], 0.0),
                        (g["size"], g["size"], 0.0),
                        (-g["size"], g["size"], 0.0),
                    ]
                ],
            )
            rot = (0.0, 0.0, 0.0)
        me.materials.append(mat)
        _link(scene, me.name, me, (0, 0, 0), rot)
    if spec["room"]:
        r = spec["room"]
        walls, floor = _room_mesh("AI Denoise Room", r)
        walls.materials.append(mats[r["material"]])
        floor.materials.append(make_material("AI Denoise Floor", spec["materials"][r["floor_material"]], 4.0))
        _link(scene, walls.name, walls)
        _link(scene, floor.name, floor)
    for i, lt in enumerate(spec["lights"]):
        _light(scene, i, lt)
    if spec["volume"]:
        v = spec["volume"]
        me = _primitive_mesh("AI Denoise Volume", "cube", False)
        me.materials.append(_volume_material("AI Denoise Volume", v))
        o = _link(scene, me.name, me, (0.0, 0.0, v["size"][2] / 2))
        o.scale = [s / 2 for s in v["size"]]
    c = spec["camera"]
    cam = bpy.data.cameras.new("AI Denoise Camera")
    cam.lens = c["lens"]
    cam.sensor_width = 36.0
    cam.clip_start = 0.005 * spec["scale"]
    cam.clip_end = 2000.0 * spec["scale"]
    if c["dof"]:
        cam.dof.use_dof = True
        cam.dof.focus_distance = c["dof"]["focus_distance"]
        cam.dof.aperture_fstop = c["dof"]["fstop"]
    ob = _link(scene, "AI Denoise Camera", cam, c["location"])
    ob.rotation_euler = (
        Euler(c["rotation"], "XYZ").to_matrix().to_4x4() @ Matrix.Rotation(c["roll"], 4, "Z")
    ).to_euler()
    scene.camera = ob
