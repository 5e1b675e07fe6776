"""Dataset generation: objects in, 3DIEBench-style images and latents out.

Importing this package does not import Blender; only `render.scene` does.
"""
