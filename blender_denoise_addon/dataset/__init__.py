"""The training dataset, pure (numpy only, never bpy): ``spec`` describes and seeds the random
scenes, ``files`` is the folder layout that the generator writes and training reads.
The bpy side that renders them is ``generator/``."""
