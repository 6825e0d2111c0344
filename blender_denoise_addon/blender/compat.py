"""Every difference between the Blender versions the add-on supports (4.2 LTS to 5.3).

The rest of the Blender layer calls these functions and never checks a version itself.
Each difference is detected by the API that changed, not by a version number. Found by
running every feature in each version (tests/blender_matrix.py).

| what                 | 4.2 LTS, 4.5 LTS                                | 5.0 and later                          |
|----------------------|--------------------------------------------------|----------------------------------------|
| multilayer EXR       | ``file_format = 'OPEN_EXR_MULTILAYER'``          | ``media_type = 'MULTI_LAYER_IMAGE'``   |
| compositor output    | ``scene.node_tree`` (``use_nodes``), Composite   | ``scene.compositing_node_group``       |
| new material / world | no node tree until ``use_nodes = True``          | a node tree from the start             |
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import bpy

MULTILAYER_EXR = "OPEN_EXR_MULTILAYER"


def _has_media_type(image_settings: Any) -> bool:
    return hasattr(image_settings, "media_type")


def set_file_format(image_settings: Any, file_format: str) -> None:
    """``'OPEN_EXR_MULTILAYER'`` or a single-image format (``'PNG'``, ``'OPEN_EXR'``, ...)."""
    if not _has_media_type(image_settings):
        image_settings.file_format = file_format
        return
    # 5.0: the media type limits the formats, and a multilayer EXR is a media type of its own
    # (setting file_format to it raises TypeError).
    if file_format == MULTILAYER_EXR:
        image_settings.media_type = "MULTI_LAYER_IMAGE"
        return
    image_settings.media_type = "IMAGE"
    image_settings.file_format = file_format


def node_tree(idblock: Any) -> Any:
    """The node tree of a material or world; 4.x creates new ones without one."""
    if idblock.node_tree is None:
        idblock.use_nodes = True  # deprecated in 5.0, where new ones already have a tree
    return idblock.node_tree


def _has_compositing_group(scene: Any) -> bool:
    return hasattr(scene, "compositing_node_group")


def compositor_state(scene: Any) -> Any:
    """What the scene's compositor is: its group (5.0) or its node tree's nodes and links (4.x).
    Comparable with ``==``, so a caller can check that nothing changed."""
    if _has_compositing_group(scene):
        return scene.compositing_node_group
    tree = scene.node_tree
    if not scene.use_nodes or tree is None:  # the compositor is off, whatever the tree holds
        return None
    nodes = sorted((n.name, n.bl_idname, n.mute) for n in tree.nodes)
    links = sorted(
        (lk.from_node.name, lk.from_socket.identifier, lk.to_node.name, lk.to_socket.identifier) for lk in tree.links
    )
    return nodes, links, tree.nodes.active.name if tree.nodes.active else None


@contextlib.contextmanager
def compositing_with(scene: Any, group: Any) -> Iterator[None]:
    """While inside, the scene's compositor outputs ``group`` (a CompositorNodeTree with a
    Group Output) and nothing else, with no Render Layers node: a render then runs only the
    compositor (no Cycles) and the Render Result shows the group's image.

    5.0: the group replaces the scene's compositing group. 4.x: the scene's node tree gets a
    Group node and an active Composite node of our own and every other node is muted (no
    Render Layers re-render, no user File Output writes); all of it is undone on exit.
    """
    if _has_compositing_group(scene):
        user_group = scene.compositing_node_group
        scene.compositing_node_group = group
        try:
            yield
        finally:
            scene.compositing_node_group = user_group
        return
    use_nodes = scene.use_nodes
    scene.use_nodes = True  # creates the default tree when the scene has none (left there, unused)
    tree = scene.node_tree
    active = tree.nodes.active
    muted = [n for n in tree.nodes if not n.mute]
    ours: list[Any] = []
    try:
        for n in muted:
            n.mute = True
        node = tree.nodes.new("CompositorNodeGroup")
        ours.append(node)
        node.node_tree = group
        out = tree.nodes.new("CompositorNodeComposite")
        ours.append(out)
        tree.links.new(node.outputs[0], out.inputs["Image"])
        tree.nodes.active = out  # the active Composite node is the one that outputs
        yield
    finally:
        for n in ours:
            tree.nodes.remove(n)
        for n in muted:
            n.mute = False
        tree.nodes.active = active
        scene.use_nodes = use_nodes


def stop_compositing_with(group: Any) -> None:
    """Before ``group`` is removed: no scene may keep pointing at it (5.0; 4.x scenes only
    use it inside :func:`compositing_with`)."""
    for scene in bpy.data.scenes:
        if _has_compositing_group(scene) and scene.compositing_node_group == group:
            scene.compositing_node_group = None
