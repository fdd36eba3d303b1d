"""Motion nodes: preview, edit, mix, save and load the landmark track before the expensive video stage, and paste
the animated face crop back into the full-resolution portrait."""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
from comfy_api.latest import InputImpl, io, ui

import folder_paths

from ..aniportrait.data import LandmarkSequence, MeshSequence, PoseSequence, ReferenceFace
from ..aniportrait.face.crop import paste_back
from ..aniportrait.motion.edits import (HeadMotionEdit, blink_times, edit_head_motion, insert_blinks, parse_times,
                                   raise_brows, scale_mouth)
from ..aniportrait.motion.mix import SOURCES, mix_meshes, track_motion
from ..aniportrait.motion.motion_file import Motion, load_motion, save_motion
from ..aniportrait.motion.preview import preview_frames
from ..aniportrait.video_io import write_video
from . import types as apk
from .search import search_aliases
from .common import check_interrupt, progress_bar, rgb_images_to_uint8, uint8_to_images
from .output import audio_track, output_file
from .paths import input_file, input_file_identity, input_file_problem

log = logging.getLogger("aniportrait")

CATEGORY = "AniPortrait/motion"
MOTION_SUFFIX = ".npz"
OUTPUT_ANNOTATION = " [output]"
PASTE_CHUNK = 16   # frames pasted between progress updates / interrupt checks
REFERENCE_TOOLTIP = "The analysed reference portrait (Reference Face): its canonical mesh defines the face regions."
MESH_TOOLTIP = "Per-frame vertex offsets (Audio2Mesh, or another motion node)."
EDITED_MESH_TOOLTIP = "The edited vertex offsets, same frames and fps."


def _mesh_input() -> io.ComfyTypeIO.Input:
    return apk.MeshSequence.Input("mesh", tooltip=MESH_TOOLTIP)


def _reference_input() -> io.ComfyTypeIO.Input:
    return apk.ReferenceFace.Input("reference_face", tooltip=REFERENCE_TOOLTIP)


def _mesh_output() -> io.ComfyTypeIO.Output:
    return apk.MeshSequence.Output(display_name="mesh", tooltip=EDITED_MESH_TOOLTIP)


class MotionPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_MotionPreview", display_name="Motion Preview (AniPortrait)", category=CATEGORY,
            **search_aliases("APK_MotionPreview"),
            description="The landmark track as a video with the speech, in seconds on the CPU: judge lip sync and "
                        "head motion before sampling. Draws the pose-image lines at the pose images' size.",
            inputs=[
                apk.Landmarks.Input("landmarks", tooltip="Per-frame 2-D landmarks (Project Landmarks or Retarget "
                                                         "Face); the preview plays at their fps."),
                io.Audio.Input("audio", optional=True,
                               tooltip="Speech to play along (trimmed or padded with silence to the motion's "
                                       "length). Leave unconnected for a silent preview."),
                apk.ReferenceFace.Input("reference_face", optional=True,
                                        tooltip="Optional: draw the lines over the (dimmed) reference portrait "
                                                "instead of black."),
                io.String.Input("filename_prefix", default="AniPortrait/motion_preview",
                                tooltip="File name prefix (a counter is appended); the folder is set by "
                                        "save_output."),
                io.Boolean.Input("save_output", default=False,
                                 tooltip="Off: write the preview to the temp folder only. On: keep it in the "
                                         "output folder."),
            ],
            outputs=[io.Video.Output(display_name="video", tooltip="The preview video (H.264 + AAC)."),
                     apk.Landmarks.Output(display_name="landmarks",
                                          tooltip="The landmarks, unchanged: take the sampler's from here and the "
                                                  "preview is always made before sampling starts.")],
            is_output_node=True)

    @classmethod
    def execute(cls, landmarks: LandmarkSequence, filename_prefix: str, save_output: bool, audio: dict | None = None,
                reference_face: ReferenceFace | None = None) -> io.NodeOutput:
        background = reference_face.image if reference_face is not None else None
        frames = preview_frames(landmarks, background)
        check_interrupt()
        path, subfolder, folder_type = output_file(filename_prefix, save_output, frames.shape[2], frames.shape[1],
                                                   ".mp4")
        track = audio_track(audio) if audio is not None else None
        write_video(path, frames, landmarks.fps, track, "mp4", video_options={"preset": "ultrafast"})
        preview = ui.PreviewVideo([ui.SavedResult(path.name, subfolder, folder_type)])
        return io.NodeOutput(InputImpl.VideoFromFile(str(path)), landmarks, ui=preview)


class MouthAmplitude(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_MouthAmplitude", display_name="Mouth Amplitude (AniPortrait)", category=CATEGORY,
            description="Scales the mouth movement: the offsets of the lips and chin (fading out over 1.5 cm "
                        "towards cheeks and nose) are multiplied by the amplitude.",
            inputs=[_reference_input(), _mesh_input(),
                    io.Float.Input("amplitude", default=1.0, min=0.0, max=3.0, step=0.05,
                                   tooltip="Factor on the mouth offsets: 0 = the portrait's own mouth in every "
                                           "frame (closed if it is closed in the photo), 1 = as predicted, "
                                           ">1 = stronger articulation.")],
            outputs=[_mesh_output()])

    @classmethod
    def execute(cls, reference_face: ReferenceFace, mesh: MeshSequence, amplitude: float) -> io.NodeOutput:
        return io.NodeOutput(scale_mouth(mesh, reference_face.face.lmks3d, amplitude))


class HeadMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        def offset(name: str, meaning: str, limit: float) -> io.Float.Input:
            return io.Float.Input(name, default=0.0, min=-limit, max=limit, step=0.1,
                                  tooltip=f"Added to every frame: {meaning}.")

        return io.Schema(
            node_id="APK_HeadMotion", display_name="Head Motion (AniPortrait)", category=CATEGORY,
            description="Scales, offsets and smooths the head pose (relative to the portrait's own pose: zero = "
                        "the head as in the photo). rx is pitch, ry yaw, rz roll; tx, ty, tz move the head.",
            inputs=[
                apk.PoseSequence.Input("pose", tooltip="Per-frame head pose (Audio2Pose, Head Pose Template, "
                                                       "Driving Motion or Load Motion)."),
                io.Float.Input("rotation_scale", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="Factor on the three rotation angles: 0 = the head keeps the portrait's "
                                       "angle, 1 = unchanged, 2 = twice the turning."),
                io.Float.Input("translation_scale", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="Factor on the three translations: 0 = the head stays in place."),
                offset("rx_offset", "degrees of pitch; positive tilts the head down", 45.0),
                offset("ry_offset", "degrees of yaw; positive turns the nose towards the image's right", 45.0),
                offset("rz_offset", "degrees of roll; positive rolls the head counter-clockwise in the image", 45.0),
                offset("tx_offset", "cm of the face model; positive moves the head right in the image", 10.0),
                offset("ty_offset", "cm of the face model; positive moves the head up", 10.0),
                offset("tz_offset", "cm of the face model; positive moves the head towards the camera (larger)",
                       10.0),
                io.Int.Input("smoothing", default=1, min=1, max=61,
                             tooltip="Moving-average window in frames, centred (smoothing // 2 frames on each "
                                     "side, fewer at the ends; odd numbers): 1 = off, 9 at 30 fps = 0.3 s."),
            ],
            outputs=[apk.PoseSequence.Output(display_name="pose", tooltip="The edited head pose.")])

    @classmethod
    def execute(cls, pose: PoseSequence, rotation_scale: float, translation_scale: float, rx_offset: float,
                ry_offset: float, rz_offset: float, tx_offset: float, ty_offset: float, tz_offset: float,
                smoothing: int) -> io.NodeOutput:
        edit = HeadMotionEdit(rotation_scale, translation_scale,
                              (rx_offset, ry_offset, rz_offset, tx_offset, ty_offset, tz_offset), smoothing)
        return io.NodeOutput(edit_head_motion(pose, edit))


class EyeBlinks(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_EyeBlinks", display_name="Eye Blinks (AniPortrait)", category=CATEGORY,
            description="Inserts blinks: the portrait's upper and lower eyelid landmarks close towards each other "
                        "(quick close, slower open) at a natural rate or at given times.",
            inputs=[
                _reference_input(), _mesh_input(),
                io.Float.Input("rate", default=15.0, min=0.0, max=60.0, step=0.5,
                               tooltip="Blinks per minute, evenly spread with a random shift of up to 35% of the "
                                       "interval (people blink about 15-20 times a minute); 0 = none. Ignored "
                                       "when times are given."),
                io.String.Input("times", default="",
                                tooltip="Optional: blink moments in seconds from the start, e.g. '0.8, 2.5, 4' "
                                        "(full closure at each, on the nearest frame)."),
                io.Float.Input("duration", default=0.3, min=0.05, max=2.0, step=0.01,
                               tooltip="Length of one blink in seconds: 40% closing, 60% opening."),
                io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="How far the lids close at the blink's peak: 1 = shut, 0.5 = half the "
                                       "opening."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Random shift of the blinks at a rate (the same seed gives the same blinks)."),
            ],
            outputs=[_mesh_output()])

    @classmethod
    def execute(cls, reference_face: ReferenceFace, mesh: MeshSequence, rate: float, times: str, duration: float,
                strength: float, seed: int) -> io.NodeOutput:
        centres = parse_times(times)
        seconds = len(mesh.offsets) / mesh.fps
        late = [t for t in centres if t > seconds]
        if late:
            log.warning("AniPortrait Eye Blinks: blink time(s) %s s are after the end of the %.2f s motion; skipped",
                        ", ".join(f"{t:g}" for t in late), seconds)
        if not centres:
            centres = blink_times(seconds, rate, seed)
        return io.NodeOutput(insert_blinks(mesh, reference_face.face.lmks3d, centres, duration, strength))


class BrowRaise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_BrowRaise", display_name="Brow Raise (AniPortrait)", category=CATEGORY,
            description="Moves both eyebrows up or down in every frame (the eyelids stay); fades out over 1 cm "
                        "around the brows.",
            inputs=[_reference_input(), _mesh_input(),
                    io.Float.Input("raise_cm", default=0.3, min=-1.5, max=1.5, step=0.05,
                                   tooltip="Brow movement in cm of the face mesh (a face is about 15 cm from chin "
                                           "to hairline): positive raises, negative lowers (a frown).")],
            outputs=[_mesh_output()])

    @classmethod
    def execute(cls, reference_face: ReferenceFace, mesh: MeshSequence, raise_cm: float) -> io.NodeOutput:
        return io.NodeOutput(raise_brows(mesh, reference_face.face.lmks3d, raise_cm))


class DrivingMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_DrivingMotion", display_name="Driving Motion (AniPortrait)", category=CATEGORY,
            description="A driving video's motion in the audio path's terms: expression offsets (each frame's "
                        "mesh minus its most neutral frame's) and the head pose relative to the first frame, "
                        "both resampled to fps. Mix it with speech in Mix Motion.",
            inputs=[
                apk.FaceTrack.Input("face_track", tooltip="The driving video's faces (Video Face Landmarks)."),
                io.Float.Input("fps", default=30.0, min=1.0, max=120.0, step=0.001,
                               tooltip="Frame rate to resample to (linear in time); use the speech's fps."),
                io.Int.Input("smoothing", default=5, min=1, max=31,
                             tooltip="Head-pose moving average in frames (centred, smoothing // 2 each side; "
                                     "1 = off). AniPortrait's pose templates use 5."),
            ],
            outputs=[apk.MeshSequence.Output(display_name="mesh", tooltip="Expression offsets per frame."),
                     apk.PoseSequence.Output(display_name="pose",
                                             tooltip="Head pose per frame relative to the first frame; loop it "
                                                     "to the speech's length with Head Pose Template.")])

    @classmethod
    def execute(cls, face_track, fps: float, smoothing: int) -> io.NodeOutput:
        mesh, pose = track_motion(face_track, fps, smoothing)
        return io.NodeOutput(mesh, pose)


class MixMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        def source(region: str, default: str, what: str) -> io.Combo.Input:
            return io.Combo.Input(region, options=list(SOURCES), default=default,
                                  tooltip=f"Where the {what} move from.")

        return io.Schema(
            node_id="APK_MixMotion", display_name="Mix Motion (AniPortrait)", category=CATEGORY,
            **search_aliases("APK_MixMotion"),
            description="Combines two mesh motions per face region, e.g. the mouth from speech and the eyes and "
                        "brows from a driving video, blending softly across region borders. The result has the "
                        "speech's length; the driving motion loops forwards and backwards if shorter.",
            inputs=[
                _reference_input(),
                apk.MeshSequence.Input("speech_mesh", tooltip="Motion from speech (Audio2Mesh)."),
                apk.MeshSequence.Input("driving_mesh", tooltip="Motion from a driving video (Driving Motion), "
                                                               "at the same fps."),
                source("mouth", "speech", "lips, chin and jaw"),
                source("eyes", "driving", "eyelids"),
                source("brows", "driving", "eyebrows"),
                source("rest", "speech", "cheeks, nose, forehead and face outline"),
                io.Float.Input("border_cm", default=1.0, min=0.0, max=5.0, step=0.1,
                               tooltip="Width in cm of the soft blend around each region (a face is about 15 cm "
                                       "tall); 0 = hard borders."),
            ],
            outputs=[apk.MeshSequence.Output(display_name="mesh", tooltip="The mixed vertex offsets.")])

    @classmethod
    def execute(cls, reference_face: ReferenceFace, speech_mesh: MeshSequence, driving_mesh: MeshSequence,
                mouth: str, eyes: str, brows: str, rest: str, border_cm: float) -> io.NodeOutput:
        sources = {"mouth": mouth, "eyes": eyes, "brows": brows, "rest": rest}
        return io.NodeOutput(mix_meshes(speech_mesh, driving_mesh, reference_face.face.lmks3d, sources, border_cm))


def motion_choices() -> list[str]:
    """Motion files in the input folder, then those saved in the output folder (annotated)."""
    found = []
    for base, annotation in ((folder_paths.get_input_directory(), ""),
                             (folder_paths.get_output_directory(), OUTPUT_ANNOTATION)):
        for folder, _, files in os.walk(base):
            relative = os.path.relpath(folder, base)
            found += [os.path.normpath(os.path.join(relative, f)).replace(os.sep, "/") + annotation
                      for f in sorted(files) if f.endswith(MOTION_SUFFIX)]
    return found


class SaveMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_SaveMotion", display_name="Save Motion (AniPortrait)", category=CATEGORY,
            description="Saves mesh, head-pose and/or landmark sequences with their fps and sizes in one .npz in "
                        "the output folder (format: README, 'Motion files'), to reuse with another portrait or "
                        "edit elsewhere. Load Motion lists it at once.",
            inputs=[
                apk.MeshSequence.Input("mesh", optional=True, tooltip="Vertex offsets to save."),
                apk.PoseSequence.Input("pose", optional=True, tooltip="Head pose to save."),
                apk.Landmarks.Input("landmarks", optional=True, tooltip="2-D landmarks to save."),
                io.String.Input("filename_prefix", default="AniPortrait/motion",
                                tooltip="Saves <prefix>_00001_.npz inside the output folder (sub-folders allowed)."),
            ],
            outputs=[],
            is_output_node=True)

    @classmethod
    def execute(cls, filename_prefix: str, mesh: MeshSequence | None = None, pose: PoseSequence | None = None,
                landmarks: LandmarkSequence | None = None) -> io.NodeOutput:
        motion = Motion(mesh, pose, landmarks)
        path, subfolder, _ = output_file(filename_prefix, True, 0, 0, MOTION_SUFFIX)
        save_motion(path, motion)
        saved = "/".join(part for part in (subfolder, path.name) if part)
        log.info("AniPortrait: motion saved to %s: %s", saved, motion.describe())
        return io.NodeOutput(ui=ui.PreviewText(f"saved {saved}: {motion.describe()}"))


class LoadMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_LoadMotion", display_name="Load Motion (AniPortrait)", category=CATEGORY,
            description="Loads a motion .npz (Save Motion's format) from the input folder, or one saved in the "
                        "output folder ('[output]'). Parts the file lacks come out empty (0 frames) and are "
                        "refused by the node they reach.",
            inputs=[io.Combo.Input("motion", options=motion_choices(), upload=io.UploadType.model,
                                   tooltip="Motion file (.npz) in ComfyUI's input folder, or '... [output]' for one "
                                           "written by Save Motion. Refresh (R) after saving a new one.")],
            outputs=[apk.MeshSequence.Output(display_name="mesh", tooltip="The file's vertex offsets."),
                     apk.PoseSequence.Output(display_name="pose", tooltip="The file's head pose."),
                     apk.Landmarks.Output(display_name="landmarks", tooltip="The file's 2-D landmarks.")])

    @classmethod
    def execute(cls, motion: str) -> io.NodeOutput:
        loaded = load_motion(input_file(motion, "motion"))
        fps = float((loaded.mesh or loaded.pose or loaded.landmarks).fps)
        mesh = loaded.mesh or MeshSequence(np.zeros((0, 468, 3)), fps)
        pose = loaded.pose or PoseSequence(np.zeros((0, 6)), fps)
        landmarks = loaded.landmarks or LandmarkSequence(np.zeros((0, 468, 2)), 1, 1, fps)
        return io.NodeOutput(mesh, pose, landmarks, ui=ui.PreviewText(f"{motion}: {loaded.describe()}"))

    @classmethod
    def fingerprint_inputs(cls, motion: str) -> tuple[str, int, int]:
        return input_file_identity(motion, "motion")

    @classmethod
    def validate_inputs(cls, motion: str) -> bool | str:
        return input_file_problem(motion, "motion")


class PasteBack(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_PasteBack", display_name="Paste Back (AniPortrait)", category=CATEGORY,
            **search_aliases("APK_PasteBack"),
            description="Full-resolution output: each generated frame (animated from the face crop of Reference "
                        "Face, crop = auto) is resized to the crop box and blended into the original portrait "
                        "with a feathered edge.",
            inputs=[
                io.Image.Input("frames", tooltip="Generated frames (the sampler's output)."),
                io.Image.Input("portrait", tooltip="The full-resolution portrait given to Reference Face (first "
                                                   "image of the batch)."),
                apk.ReferenceFace.Input("reference_face", tooltip="Reference Face of that portrait: where its crop "
                                                                  "box lies (without a crop, frames are resized to "
                                                                  "the portrait)."),
                io.Int.Input("feather", default=24, min=0, max=512,
                             tooltip="Width in pixels of the portrait over which the frame fades into the photo "
                                     "at crop edges inside the photo; 0 = hard edge."),
            ],
            outputs=[io.Image.Output(display_name="frames",
                                     tooltip="Frames at the portrait's resolution (memory: frames x width x "
                                             "height x 12 bytes).")])

    @classmethod
    def execute(cls, frames: torch.Tensor, portrait: torch.Tensor, reference_face: ReferenceFace,
                feather: int) -> io.NodeOutput:
        source = rgb_images_to_uint8(portrait, "portrait")[0]
        size = (source.shape[1], source.shape[0])
        if reference_face.source_size is not None and tuple(reference_face.source_size) != size:
            width, height = reference_face.source_size
            raise ValueError(f"Paste Back: input 'portrait' is {size[0]}x{size[1]} but Reference Face analysed a "
                             f"{width}x{height} image. Connect the same image to both.")
        box = reference_face.crop_box or (0, 0, size[0], size[1])
        total = frames.shape[0]
        result, progress = None, progress_bar(total)
        for start in range(0, total, PASTE_CHUNK):
            check_interrupt()
            chunk = rgb_images_to_uint8(frames[start:start + PASTE_CHUNK, ..., :3], "frames")
            pasted = uint8_to_images(paste_back(source, chunk, box, feather))
            if result is None:
                result = pasted.new_empty((total,) + tuple(pasted.shape[1:]))
            result[start:start + len(pasted)] = pasted
            progress(start + len(pasted), total)
        return io.NodeOutput(result)


NODES = [MotionPreview, MouthAmplitude, HeadMotion, EyeBlinks, BrowRaise, DrivingMotion, MixMotion, SaveMotion,
         LoadMotion, PasteBack]
