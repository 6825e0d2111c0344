"""Training-pair generator, the Blender side: builds scenes described by
``dataset.spec`` in bpy, renders them with Cycles and writes the dataset
laid out by ``dataset.files``. Imports bpy; load only inside Blender or
with the bpy module installed."""
