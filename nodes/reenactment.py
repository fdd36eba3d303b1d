"""Face-reenactment nodes: a driving video's motion onto the reference face, and head-pose templates."""
from __future__ import annotations

import logging
import os

import numpy as np
from comfy_api.latest import io, ui

from ..aniportrait.data import PoseSequence
from ..aniportrait.face.pose_template import TEMPLATE_SMOOTHING, pose_template
from ..aniportrait.face.retarget import DEFAULT_SMOOTHING, SIZE_MODES, retarget_face
from . import types as apk
from .output import output_file
from .search import search_aliases

log = logging.getLogger("aniportrait")

SIZE_MODE_TOOLTIP = ("Where the face is projected before resizing to the reference size. auto: at the driving "
                     "video's size when its aspect ratio equals the reference's (AniPortrait's vid2vid, "
                     "bit-identical), otherwise at the reference size (no stretching). driving: always at the "
                     "driving video's size (the original; stretches if the aspect ratios differ). output: always at "
                     "the reference size.")


class RetargetFace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_RetargetFace", display_name="Retarget Face (AniPortrait)", category="AniPortrait/reenactment",
            **search_aliases("APK_RetargetFace"),
            description="Face reenactment: moves the driving video's head motion and expressions onto the reference "
                        "face (AniPortrait's vid2vid retarget) and projects them to 2-D landmarks.",
            inputs=[
                apk.FaceTrack.Input("face_track", tooltip="The driving video's faces (Video Face Landmarks)."),
                apk.ReferenceFace.Input("reference_face", tooltip="The analysed reference portrait (Reference Face)."),
                io.Float.Input("fps", default=30.0, min=0.0, max=120.0, step=0.001,
                               tooltip="Output frame rate; the driving motion is resampled (linearly in time) to it. "
                                       "0 = AniPortrait's rule: keep the driving video's rate, except 60 fps -> 30 "
                                       "(every 2nd frame)."),
                io.Int.Input("smoothing", default=DEFAULT_SMOOTHING, min=1, max=15,
                             tooltip="Frames averaged for the head pose: a centred window of smoothing // 2 frames "
                                     "on each side (so use odd numbers; 1 = off). AniPortrait uses 3."),
                io.Combo.Input("size_mode", options=list(SIZE_MODES), default="auto", tooltip=SIZE_MODE_TOOLTIP),
            ],
            outputs=[apk.Landmarks.Output(display_name="landmarks",
                                          tooltip="Per-frame 2-D landmarks; Render Pose Image draws them at the "
                                                  "reference's size.")])

    @classmethod
    def execute(cls, face_track, reference_face, fps, smoothing, size_mode) -> io.NodeOutput:
        output_fps = None if fps == 0 else fps
        return io.NodeOutput(retarget_face(face_track, reference_face.face, fps=output_fps, window=smoothing,
                                           size_mode=size_mode))


def save_template(poses: np.ndarray, filename_prefix: str) -> str:
    """Writes the template as ``.npy`` (float64, (M, 6), like AniPortrait's pose_temp.npy) into ComfyUI's output
    folder; returns the path relative to it."""
    path, subfolder, _ = output_file(filename_prefix, True, 0, 0, ".npy")
    np.save(path, poses)
    return os.path.join(subfolder, path.name)


class PoseTemplate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_PoseTemplate", display_name="Pose Template (AniPortrait)", category="AniPortrait/reenactment",
            description="Head-pose template from a video (AniPortrait's generate_ref_pose): every frame's head pose "
                        "relative to the first, resampled and smoothed; drives audio-driven generation instead of "
                        "Audio2Pose. Optionally saved as .npy into the output folder.",
            inputs=[
                apk.FaceTrack.Input("face_track", tooltip="The head-pose video's faces (Video Face Landmarks)."),
                io.Float.Input("fps", default=30.0, min=1.0, max=120.0, step=0.001,
                               tooltip="Frame rate of the template (AniPortrait: 30)."),
                io.String.Input("filename_prefix", default="aniportrait/pose_template",
                                tooltip="Saves the template as <prefix>_00001_.npy in ComfyUI's output folder "
                                        "(a pose_temp.npy for AniPortrait). Empty = do not save."),
            ],
            outputs=[apk.PoseSequence.Output(display_name="pose",
                                             tooltip="Per-frame head pose relative to the first frame.")],
            is_output_node=True)

    @classmethod
    def execute(cls, face_track, fps, filename_prefix) -> io.NodeOutput:
        poses = pose_template(face_track.trans_mat, face_track.fps, target_fps=fps, window=TEMPLATE_SMOOTHING)
        summary = f"{len(poses)} frames at {fps:g} fps"
        if filename_prefix.strip():
            saved = save_template(poses, filename_prefix.strip())
            log.info("AniPortrait: pose template saved to %s (%s)", saved, summary)
            summary = f"saved {saved} ({summary})"
        return io.NodeOutput(PoseSequence(poses=poses, fps=float(fps)), ui=ui.PreviewText(summary))


NODES = [RetargetFace, PoseTemplate]
