"""Lmk2Video networks: PoseGuider, reference UNet, denoising UNet3D with motion modules, and their loaders.

Module trees keep the original AniPortrait attribute names, so the released checkpoints load strictly and unchanged.
"""
