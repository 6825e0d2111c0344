"""Everything that imports bpy: the Blender side of the add-on, apart from the pure ``core``.

- ``blender_io``: bpy data <-> core (render results, passes, images, options from the panel);
- ``compat``: the differences between the Blender versions artists run;
- ``ui``: properties, panel, operators, preferences and the render hook;
- ``generator``: the training-pair generator (scenes, rendering, resumable runs).

Like glTF-Blender-IO's ``blender/`` beside its pure ``io/``: these modules convert bpy data and
call the core; the core never imports them.
"""
