"""Face analysis nodes: the reference portrait and the driving video, through MediaPipe FaceLandmarker."""
from __future__ import annotations

from comfy_api.latest import io

from ..aniportrait.cache import MODEL_CACHE, file_identity
from ..aniportrait.face.landmarker import FaceLandmarker
from ..aniportrait.face.reference import ANALYSIS_SIZES, analyse_reference
from ..aniportrait.face.track import track_faces
from . import types as apk
from .common import (check_interrupt, model_choices, progress_bar, resolve_model, rgb_images_to_uint8,
                     uint8_to_images)
from .paths import model_choices_problem

CROP_NONE = "none"
CROP_AUTO = "auto (face-centred square)"
LANDMARKER_TOOLTIP = ("MediaPipe FaceLandmarker task file in models/aniportrait "
                      "(face_landmarker_v2_with_blendshapes.task is downloaded on first use).")


def load_landmarker(choice: str) -> FaceLandmarker:
    """The FaceLandmarker for a dropdown choice, shared through the model cache."""
    path = resolve_model("face_landmarker", choice)
    return MODEL_CACHE.get(("face_landmarker", file_identity(path)), lambda: FaceLandmarker(path))


class _ChoosesLandmarker(io.ComfyNode):
    """A node with a 'landmarker' model dropdown, refused at validation unless it names a path in the models
    folder."""

    @classmethod
    def validate_inputs(cls, landmarker: str | None = None) -> bool | str:
        return model_choices_problem(landmarker=landmarker)


class ReferenceFaceNode(_ChoosesLandmarker):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_ReferenceFace", display_name="Reference Face (AniPortrait)", category="AniPortrait/face",
            description="Analyses the reference portrait with MediaPipe (landmarks, 3-D face mesh, head pose) at "
                        "the generation size, optionally cropping it around the face first like the AniPortrait app.",
            inputs=[
                io.Image.Input("image", tooltip="Reference portrait. Only the first image of a batch is used."),
                io.Combo.Input("landmarker", options=model_choices("face_landmarker", [".task"]),
                               tooltip=LANDMARKER_TOOLTIP),
                io.Int.Input("width", default=512, min=64, max=2048, step=8,
                             tooltip="Width of the generated video; the portrait is resized (bilinear) to width x "
                                     "height for the face analysis, as AniPortrait does."),
                io.Int.Input("height", default=512, min=64, max=2048, step=8,
                             tooltip="Height of the generated video (see width)."),
                io.Combo.Input("crop", options=[CROP_NONE, CROP_AUTO], default=CROP_NONE,
                               tooltip="none: use the whole image (AniPortrait's scripts). auto: the AniPortrait "
                                       "app's crop - a centred square if the face is large, else a square of 1.5x "
                                       "the face box around the face (black where it leaves the image)."),
                io.Combo.Input("analysis_size", options=list(ANALYSIS_SIZES), default=ANALYSIS_SIZES[0],
                               optional=True,
                               tooltip="video size: MediaPipe analyses the portrait resized to width x height "
                                       "(correct). swapped (original): resized to height x width, as AniPortrait's "
                                       "scripts do by mistake - for non-square videos the face is squashed and its "
                                       "head pose slightly off; use it only to reproduce the original exactly. "
                                       "Same result for square videos."),
            ],
            outputs=[
                apk.ReferenceFace.Output(display_name="reference_face",
                                         tooltip="The analysed reference face (for projection, retargeting and "
                                                 "rendering)."),
                io.Image.Output(display_name="image",
                                tooltip="The (cropped) portrait at its source resolution, for the reference encoder "
                                        "(which resizes it itself)."),
            ])

    @classmethod
    def execute(cls, image, landmarker, width, height, crop, analysis_size=ANALYSIS_SIZES[0]) -> io.NodeOutput:
        source = rgb_images_to_uint8(image, "image")[0]
        reference, portrait = analyse_reference(load_landmarker(landmarker), source, width, height,
                                                crop=crop == CROP_AUTO, analysis=analysis_size)
        return io.NodeOutput(reference, uint8_to_images(portrait[None]))


class VideoFaceLandmarks(_ChoosesLandmarker):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_VideoFaceLandmarks", display_name="Video Face Landmarks (AniPortrait)",
            category="AniPortrait/face",
            description="Analyses every frame of a driving video with MediaPipe (face reenactment). Frames without "
                        "a face are filled in from their neighbours (a warning lists them).",
            inputs=[
                io.Image.Input("frames", tooltip="Driving video frames [N, H, W, 3] (e.g. from Load Video); "
                                                 "analysed at their own size."),
                io.Combo.Input("landmarker", options=model_choices("face_landmarker", [".task"]),
                               tooltip=LANDMARKER_TOOLTIP),
                io.Float.Input("fps", default=30.0, min=1.0, max=240.0, step=0.001,
                               tooltip="Frame rate of these frames (the source video's); resampling to the output "
                                       "rate happens downstream."),
            ],
            outputs=[apk.FaceTrack.Output(display_name="face_track",
                                          tooltip="Per-frame landmarks, 3-D mesh, head pose and blendshapes.")])

    @classmethod
    def execute(cls, frames, landmarker, fps) -> io.NodeOutput:
        video = rgb_images_to_uint8(frames, "frames")
        analyser = load_landmarker(landmarker)
        track = track_faces(video, analyser, fps, progress=progress_bar(len(video)), check_interrupt=check_interrupt)
        return io.NodeOutput(track)


NODES = [ReferenceFaceNode, VideoFaceLandmarks]
