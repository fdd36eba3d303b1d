"""Geometry nodes: mesh + head pose -> 2-D landmarks, landmarks -> pose images (the PoseGuider's input)."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from ..aniportrait.data import LandmarkSequence, MeshSequence, PoseSequence, ReferenceFace, same_fps
from ..aniportrait.face.drawing import draw_pose_images, raw_to_display
from ..aniportrait.face.projection import project_mesh_sequence
from ..aniportrait.face.reference import reference_pose_image
from . import types as apk
from .common import check_interrupt, progress_bar, uint8_to_images

RENDER_CHUNK = 32   # frames drawn between progress updates / interrupt checks


def _check_mesh_and_pose(mesh: MeshSequence, pose: PoseSequence, reference: ReferenceFace) -> None:
    vertex_count = reference.face.lmks3d.shape[0]
    if mesh.offsets.ndim != 3 or mesh.offsets.shape[1:] != (vertex_count, 3) or len(mesh.offsets) == 0:
        raise ValueError(f"AniPortrait: input 'mesh' must hold (frames >= 1, {vertex_count}, 3) vertex offsets, got "
                         f"{mesh.offsets.shape}.")
    if pose.poses.ndim != 2 or pose.poses.shape[1] != 6:
        raise ValueError(f"AniPortrait: input 'pose' must hold (frames, 6) head poses, got {pose.poses.shape}.")
    if not same_fps(mesh.fps, pose.fps):
        raise ValueError(f"AniPortrait: input 'mesh' is at {mesh.fps:g} fps but input 'pose' at {pose.fps:g} fps. "
                         "Generate both at the same fps.")
    if len(pose.poses) < len(mesh.offsets):
        raise ValueError(f"AniPortrait: input 'pose' has {len(pose.poses)} frames, fewer than the "
                         f"{len(mesh.offsets)} of input 'mesh'. Use Head Pose Template (AniPortrait) to fit a pose "
                         "to the audio's length, or make both from the same audio.")


class ProjectLandmarks(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_ProjectLandmarks", display_name="Project Landmarks (AniPortrait)",
            category="AniPortrait/geometry",
            description="Audio-driven path: adds the per-frame mesh offsets to the reference face's 3-D mesh, moves "
                        "it by the head pose and the reference's placement, and projects it with MediaPipe's camera "
                        "to 2-D landmarks at the reference's size.",
            inputs=[
                apk.ReferenceFace.Input("reference_face", tooltip="The analysed reference portrait (Reference Face "
                                                                  "node): its mesh, placement and size."),
                apk.MeshSequence.Input("mesh", tooltip="Per-frame vertex offsets (Audio2Mesh)."),
                apk.PoseSequence.Input("pose", tooltip="Per-frame head pose (Audio2Pose or Head Pose Template), at "
                                                       "least as many frames as the mesh; extra frames are unused."),
            ],
            outputs=[apk.Landmarks.Output(display_name="landmarks",
                                          tooltip="Per-frame 2-D face landmarks in pixels of the reference size.")])

    @classmethod
    def execute(cls, reference_face, mesh, pose) -> io.NodeOutput:
        _check_mesh_and_pose(mesh, pose, reference_face)
        face = reference_face.face
        points = project_mesh_sequence(face, mesh.offsets, pose.poses)
        return io.NodeOutput(LandmarkSequence(points=points, width=face.width, height=face.height, fps=mesh.fps))


def render_landmarks(landmarks: LandmarkSequence) -> torch.Tensor:
    """Display-RGB IMAGE batch of the pose images of every frame, with progress and cancel."""
    if landmarks.points.ndim != 3 or len(landmarks.points) == 0:
        raise ValueError(f"AniPortrait: input 'landmarks' must hold (frames, points, 2) coordinates, got "
                         f"{landmarks.points.shape}.")
    total = len(landmarks.points)
    progress = progress_bar(total)
    images = None
    for start in range(0, total, RENDER_CHUNK):
        check_interrupt()
        chunk = uint8_to_images(raw_to_display(draw_pose_images(landmarks, slice(start, start + RENDER_CHUNK))))
        if images is None:
            images = chunk.new_empty((total,) + tuple(chunk.shape[1:]))
        images[start:start + len(chunk)] = chunk
        progress(start + len(chunk), total)
    return images


class RenderPoseImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_RenderPoseImage", display_name="Render Pose Image (AniPortrait)",
            category="AniPortrait/geometry",
            description="Draws AniPortrait's pose images (face outline, eyes, eyebrows, lips in fixed colours, "
                        "drawn at 512x512 then resized) from 2-D landmarks; the sampler's pose input.",
            inputs=[
                apk.Landmarks.Input("landmarks", tooltip="Per-frame 2-D landmarks (Project Landmarks or Retarget "
                                                         "Face)."),
                apk.ReferenceFace.Input("reference_face", optional=True,
                                        tooltip="Optional: the reference portrait, to also draw its own pose image."),
            ],
            outputs=[
                io.Image.Output(display_name="pose_images",
                                tooltip="One pose image per frame (RGB for display; the sampler converts them back "
                                        "to the network's channel order)."),
                io.Image.Output(display_name="reference_pose",
                                tooltip="The reference face's pose image (black if no reference_face is given)."),
            ])

    @classmethod
    def execute(cls, landmarks, reference_face=None) -> io.NodeOutput:
        pose_images = render_landmarks(landmarks)
        if reference_face is not None:
            raw = reference_pose_image(reference_face)
            reference_pose = uint8_to_images(raw_to_display(raw)[None])
        else:
            reference_pose = torch.zeros((1,) + tuple(pose_images.shape[1:]), dtype=pose_images.dtype,
                                         device=pose_images.device)
        return io.NodeOutput(pose_images, reference_pose)


NODES = [ProjectLandmarks, RenderPoseImage]
