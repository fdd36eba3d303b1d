"""Builds the ready-made workflows in this folder (UI format: drag a .json onto ComfyUI, or open it from the
Templates browser, where ComfyUI lists this folder under the pack's name) from the compact descriptions below.

    python workflows/build_workflows.py                  # asks a temporary ComfyUI (the pinned CPU install)
    python workflows/build_workflows.py --server URL     # or a running ComfyUI that has this pack

Node definitions come from the server's /object_info, so widget order and socket types are the ones the editor
uses (the browser tests load every file and compare the editor's conversion with scripts/workflow_api.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACK_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_DIR))

from aniportrait.comfy_host import OFFLINE_ENV, ComfyClient, ComfyServer  # noqa: E402
from aniportrait.registry import PACK_FOLDER_NAME  # noqa: E402
from scripts.workflow_api import WIDGET_TYPES, input_spec, widget_slots  # noqa: E402
from workflows.layout import arrange  # noqa: E402

WORKFLOW_DIR = Path(__file__).resolve().parent
NOTE = "MarkdownNote"
COLUMN_WIDTH, NODE_WIDTH, GAP = 380, 330, 36
# room the editor needs below the widgets for previews (image, audio player, video)
PREVIEW_HEIGHT = {"LoadImage": 290, "LoadVideo": 250, "APK_LoadAudio": 60, "PreviewImage": 250,
                  "APK_VideoCombine": 300, "APK_Lmk2VideoSamplerToFile": 300, "APK_MotionPreview": 300}
# values of editor-only widgets (they never reach the server); "fixed" keeps seeds reproducible
EDITOR_WIDGET_VALUES = {"control_after_generate": "fixed", "upload": "image", "audioUI": None}


@dataclass
class Node:
    key: str
    type: str
    title: str | None = None
    widgets: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # input name -> "source key.output name"


def note(key: str, text: str) -> Node:
    return Node(key, NOTE, "Read me", widgets={"text": text})


MODELS_NOTE = ("**Models** are read from `ComfyUI/models/aniportrait/` (AniPortrait's `pretrained_weights/` "
               "layout). Missing files are downloaded on the first run, or all at once with "
               "`scripts/download_models.py` (run it in the pack's folder with the Python that runs ComfyUI; a "
               "node's missing-model error prints the exact command). A loader node shows a "
               "\"model file missing\" badge while a file is absent.")
SAMPLES_NOTE = ("**Samples**: AniPortrait's repository (github.com/Zejun-Yang/AniPortrait) has portraits in "
                "`configs/inference/ref_images/` and speech in `configs/inference/audio/`.")
SIZE_NOTE = ("The **width**, **height** and **fps** nodes set the video size and frame rate everywhere "
             "(AniPortrait: 512 x 512, 30 fps).")

# A workflow is a list of columns (left to right), each a list of nodes (top to bottom).
Columns = list[list[Node]]


def portrait() -> Node:
    return Node("image", "LoadImage", "Portrait (pick a file)", {"image": "lyl.png"})


def size_settings(with_fps: bool = True) -> list[Node]:
    return [Node("width", "PrimitiveInt", "width", {"value": 512}),
            Node("height", "PrimitiveInt", "height", {"value": 512}),
            *([Node("fps", "PrimitiveFloat", "fps", {"value": 30.0})] if with_fps else [])]


def reference_face() -> Node:
    return Node("face", "APK_ReferenceFace", links={"image": "image.IMAGE", "width": "width.INT",
                                                    "height": "height.INT"})


def video_models() -> Node:
    return Node("video_models", "APK_LoadLmk2VideoModels")


def reference_encode(image: str) -> Node:
    return Node("reference", "APK_ReferenceNetEncode", links={"models": "video_models.models", "image": image,
                                                              "width": "width.INT", "height": "height.INT"})


def sampler(poses: str, input_name: str = "pose_images") -> Node:
    """``input_name``: "pose_images", or "landmarks" to draw each window's pose images from them (no Render Pose
    Image needed)."""
    return Node("sampler", "APK_Lmk2VideoSampler", widgets={"seed": 42},
                links={"models": "video_models.models", "reference": "reference.reference", input_name: poses})


def video_combine(audio: str, fps: str) -> Node:
    return Node("combine", "APK_VideoCombine", links={"images": "sampler.frames", "audio": audio, "fps": fps})


def driving_video(title: str, filename: str) -> list[Node]:
    return [Node("video", "LoadVideo", title, {"file": filename}),
            Node("components", "GetVideoComponents", links={"video": "video.VIDEO"})]


def speech_mesh() -> list[Node]:
    """Lips from the speech (Audio2Mesh); output "mesh.mesh"."""
    return [Node("mesh_model", "APK_LoadAudio2MeshModel"),
            Node("mesh", "APK_Audio2Mesh", links={"audio2mesh_model": "mesh_model.audio2mesh_model",
                                                  "audio": "audio.audio", "fps": "fps.FLOAT"})]


def speech_pose() -> list[Node]:
    """Head pose from the speech (Audio2Pose); output "pose.pose"."""
    return [Node("pose_model", "APK_LoadAudio2PoseModel"),
            Node("pose", "APK_Audio2Pose", links={"audio2pose_model": "pose_model.audio2pose_model",
                                                  "audio": "audio.audio", "fps": "fps.FLOAT"})]


def audio_pipeline(about: Node, pose_nodes: list[Node]) -> Columns:
    """Speech -> lips (Audio2Mesh) + head pose (``pose_nodes``, output "pose.pose") -> pose images -> video."""
    speech = Node("audio", "APK_LoadAudio", "Speech (pick a file)", {"audio": "lyl.wav"})
    mesh = speech_mesh()
    project = Node("project", "APK_ProjectLandmarks", links={"reference_face": "face.reference_face",
                                                             "mesh": "mesh.mesh", "pose": "pose.pose"})
    render = Node("render", "APK_RenderPoseImage", links={"landmarks": "project.landmarks",
                                                          "reference_face": "face.reference_face"})
    preview = Node("pose_preview", "PreviewImage", "Reference pose", links={"images": "render.reference_pose"})
    return [[about, portrait(), speech],
            [*size_settings(), reference_face()],
            [*mesh, *pose_nodes],
            [project, motion_preview("project.landmarks"), render, preview],
            [video_models(), reference_encode("face.image")],
            [sampler("render.pose_images"), video_combine("audio.audio", "fps.FLOAT")]]


def motion_preview(landmarks: str) -> Node:
    """The first output an artist sees: the landmark track with the speech, seconds after Run."""
    return Node("motion_preview", "APK_MotionPreview", "Motion preview (check lip sync here first)",
                links={"landmarks": landmarks, "audio": "audio.audio", "reference_face": "face.reference_face"})


def audio_driven() -> Columns:
    about = note("about", "## AniPortrait: audio-driven portrait animation\n"
                          "A portrait photo and speech become a talking-head video with lip sync.\n\n"
                          "1. **Portrait**: pick a photo with one face looking at the camera.\n"
                          "2. **Speech**: pick the audio; the video lasts as long as the speech.\n"
                          "3. Press **Run**. Audio2Mesh moves the lips, Audio2Pose the head (change `id_seed` for "
                          "another head-motion style).\n\n" + SAMPLES_NOTE + "\n\n" + SIZE_NOTE + "\n\n"
                          + MODELS_NOTE)
    pose = speech_pose()
    return audio_pipeline(about, pose)


def audio_driven_pose_template() -> Columns:
    about = note("about", "## AniPortrait: audio-driven, head motion from a template\n"
                          "A portrait and speech become a talking head moving like a recorded pose template.\n\n"
                          "Like *audio_driven*, but the head follows a recorded head-pose template instead of "
                          "Audio2Pose.\n"
                          "1. **Portrait** and **Speech**: pick your files.\n"
                          "2. **Head Pose Template**: put a template `.npy` (e.g. AniPortrait's `pose_temp.npy`, or "
                          "one saved by *Pose Template*) into `ComfyUI/input/` and pick it. It loops forwards and "
                          "backwards for the length of the speech.\n\n" + SAMPLES_NOTE + "\n\n" + SIZE_NOTE
                          + "\n\n" + MODELS_NOTE)
    pose = [Node("pose", "APK_HeadPoseTemplate", "Head Pose Template (pick a file)", {"template": "pose_temp.npy"},
                 links={"audio": "audio.audio", "fps": "fps.FLOAT"})]
    return audio_pipeline(about, pose)


def audio_driven_fast() -> Columns:
    """audio_driven with the original's -acc: the sampler diffuses every 3rd frame, FILM makes the others."""
    about = note("about", "## AniPortrait: audio-driven, fast (frame interpolation)\n"
                          "A talking-head video from a portrait and speech in about a third of the sampling time.\n\n"
                          "Like *audio_driven*, but **Select Keyframes** passes only every `fi_step`-th pose image "
                          "(3, as AniPortrait's `-acc`) to the sampler and **FILM Interpolate** makes the frames "
                          "between: sampling takes about a third of the time. Fast head turns and lip details "
                          "between keyframes are smoothed; set `fi_step` to 1 for full quality.\n"
                          "1. **Portrait** and **Speech**: pick your files, then press **Run**.\n\n"
                          "FILM Interpolate's `length` is *full*: the video lasts as long as the speech (the "
                          "original ends up to fi_step-1 frames early).\n\n" + SAMPLES_NOTE + "\n\n" + SIZE_NOTE
                          + "\n\n" + MODELS_NOTE)
    columns = audio_driven()
    columns[0][0] = about
    nodes = {node.key: node for column in columns for node in column}
    nodes["sampler"].links["pose_images"] = "keyframes.keyframes"
    nodes["combine"].links["images"] = "film.frames"
    columns[3].append(Node("keyframes", "APK_SelectKeyframes", widgets={"fi_step": 3},
                           links={"pose_images": "render.pose_images"}))
    columns[4].append(Node("film_model", "APK_LoadFILMModel"))
    columns[5].insert(1, Node("film", "APK_FILMInterpolate", widgets={"length": "full (hold the last frame)"},
                              links={"film_model": "film_model.film_model", "frames": "sampler.frames",
                                     "plan": "keyframes.plan"}))
    return columns


def pose_video_driven() -> Columns:
    about = note("about", "## AniPortrait: pose video -> portrait video (self-driven)\n"
                          "A portrait follows a video of drawn face landmarks (AniPortrait's pose2vid).\n\n"
                          "1. **Portrait**: pick a photo.\n"
                          "2. **Pose video**: upload a video of rendered face landmarks (colored lines on black). "
                          "Make one from any talking-face video with *face_reenactment* (save the **pose_images** "
                          "of Render Pose Image with a Video Combine), or use the output of AniPortrait's "
                          "`scripts/vid2pose.py`. Each frame drives one output frame; the result keeps "
                          "the pose video's frame rate and sound.\n\n"
                          "Set the size in **width** / **height** (the pose frames are resized to it).\n\n"
                          + MODELS_NOTE)
    return [[about, portrait()],
            [*driving_video("Pose video (pick a file)", "pose_video.mp4"), *size_settings(with_fps=False)],
            [video_models(), reference_encode("image.IMAGE")],
            [sampler("components.images"), video_combine("components.audio", "components.fps")]]


def face_reenactment() -> Columns:
    about = note("about", "## AniPortrait: face reenactment\n"
                          "A portrait copies the expressions, head motion and sound of a driving video.\n\n"
                          "1. **Portrait**: pick the face to animate.\n"
                          "2. **Driving video**: upload a video of one talking face, looking at the camera (a "
                          "phone clip works; AniPortrait's repository has "
                          "`configs/inference/head_pose_temp/pose_ref_video.mp4`). Its head motion and "
                          "expressions are moved onto the portrait; the result keeps the video's sound.\n\n"
                          + SIZE_NOTE + " Retarget Face resamples the driving motion to **fps**.\n\n" + MODELS_NOTE)
    track = Node("track", "APK_VideoFaceLandmarks", links={"frames": "components.images", "fps": "components.fps"})
    retarget = Node("retarget", "APK_RetargetFace", links={"face_track": "track.face_track",
                                                           "reference_face": "face.reference_face",
                                                           "fps": "fps.FLOAT"})
    render = Node("render", "APK_RenderPoseImage", links={"landmarks": "retarget.landmarks",
                                                          "reference_face": "face.reference_face"})
    return [[about, portrait()],
            [*driving_video("Driving video (pick a file)", "driving_video.mp4"), *size_settings()],
            [reference_face(), track],
            [retarget, render],
            [video_models(), reference_encode("face.image")],
            [sampler("render.pose_images"), video_combine("components.audio", "fps.FLOAT")]]


def audio_driven_long() -> Columns:
    about = note("about", "## AniPortrait: audio-driven, any length\n"
                          "A talking-head video from a portrait and minutes of speech, at flat memory.\n\n"
                          "Like *audio_driven*, for speech of minutes: the sampler draws each window's pose images "
                          "from the landmarks when it needs them and encodes the frames into the video file as "
                          "they are decoded, so memory stays the same however long the speech is. Same frames "
                          "as *audio_driven*.\n"
                          "1. **Portrait** and **Speech**: pick your files.\n"
                          "2. Press **Run**; the video appears in the sampler node and in the output folder when "
                          "it is complete (a cancelled run leaves no file).\n\n" + SAMPLES_NOTE + "\n\n" + SIZE_NOTE
                          + "\n\n" + MODELS_NOTE)
    speech = Node("audio", "APK_LoadAudio", "Speech (pick a file)", {"audio": "lyl.wav"})
    motion = speech_mesh() + speech_pose()
    project = Node("project", "APK_ProjectLandmarks", links={"reference_face": "face.reference_face",
                                                             "mesh": "mesh.mesh", "pose": "pose.pose"})
    to_file = Node("sampler", "APK_Lmk2VideoSamplerToFile", widgets={"seed": 42},
                   links={"models": "video_models.models", "reference": "reference.reference",
                          "landmarks": "motion_preview.landmarks", "audio": "audio.audio", "fps": "fps.FLOAT"})
    return [[about, portrait(), speech],
            [*size_settings(), reference_face()],
            motion,
            [project, motion_preview("project.landmarks")],
            [video_models(), reference_encode("face.image")],
            [to_file]]


PREVIEW_NOTE = ("**Motion preview** plays the landmark track with the speech seconds after Run, long before the "
                "video is sampled: adjust the motion nodes and run again until lips and head look right.")


def audio_driven_motion_edit() -> Columns:
    about = note("about", "## AniPortrait: audio-driven, with motion edits and full-resolution output\n"
                          "A talking head whose mouth, blinks and head motion you adjust, pasted back into the "
                          "full photo.\n\n"
                          "1. **Portrait** and **Speech**: pick your files.\n"
                          "2. Edit the motion: **Mouth Amplitude** (0 = the portrait's mouth, 1 = as predicted, "
                          "more = stronger), **Eye Blinks** (per minute, or at given seconds), **Head Motion** "
                          "(scale, offset in degrees / cm, smoothing window in frames).\n"
                          "3. **Save Motion** keeps the edited motion as `.npz` for **Load Motion**.\n\n"
                          + PREVIEW_NOTE + "\n\nThe face is animated in a crop around it (Reference Face, crop "
                          "auto) and **Paste Back** puts it into the photo at full resolution.\n\n" + SIZE_NOTE
                          + "\n\n" + MODELS_NOTE)
    speech = Node("audio", "APK_LoadAudio", "Speech (pick a file)", {"audio": "lyl.wav"})
    face = Node("face", "APK_ReferenceFace", widgets={"crop": "auto (face-centred square)"},
                links={"image": "image.IMAGE", "width": "width.INT", "height": "height.INT"})
    motion = speech_mesh() + speech_pose()
    edits = [Node("mouth", "APK_MouthAmplitude", widgets={"amplitude": 1.2},
                  links={"reference_face": "face.reference_face", "mesh": "mesh.mesh"}),
             Node("blinks", "APK_EyeBlinks", links={"reference_face": "face.reference_face", "mesh": "mouth.mesh"}),
             Node("head", "APK_HeadMotion", widgets={"smoothing": 5}, links={"pose": "pose.pose"}),
             Node("save_motion", "APK_SaveMotion", links={"mesh": "blinks.mesh", "pose": "head.pose"})]
    project = Node("project", "APK_ProjectLandmarks", links={"reference_face": "face.reference_face",
                                                             "mesh": "blinks.mesh", "pose": "head.pose"})
    paste = Node("paste", "APK_PasteBack", links={"frames": "sampler.frames", "portrait": "image.IMAGE",
                                                  "reference_face": "face.reference_face"})
    combine = Node("combine", "APK_VideoCombine", links={"images": "paste.frames", "audio": "audio.audio",
                                                         "fps": "fps.FLOAT"})
    return [[about, portrait(), speech],
            [*size_settings(), face],
            motion,
            edits,
            [project, motion_preview("project.landmarks")],
            [video_models(), reference_encode("face.image")],
            [sampler("motion_preview.landmarks", "landmarks"), paste, combine]]


def audio_driven_with_driving_video() -> Columns:
    about = note("about", "## AniPortrait: speech + driving video\n"
                          "Lips from speech, head motion and expressions from a driving video.\n\n"
                          "The mouth follows the **Speech**; head motion, eyes and brows follow the **Driving "
                          "video** (a talking or moving face; it loops forwards and backwards if shorter than the "
                          "speech).\n"
                          "1. **Portrait**, **Speech** and **Driving video**: pick your files.\n"
                          "2. **Mix Motion** chooses the source of each face region (mouth, eyes, brows, rest) and "
                          "the width of the soft border between them.\n\n" + PREVIEW_NOTE + "\n\n" + SIZE_NOTE
                          + "\n\n" + MODELS_NOTE)
    speech = Node("audio", "APK_LoadAudio", "Speech (pick a file)", {"audio": "lyl.wav"})
    track = Node("track", "APK_VideoFaceLandmarks", links={"frames": "components.images", "fps": "components.fps"})
    driving = Node("driving", "APK_DrivingMotion", links={"face_track": "track.face_track", "fps": "fps.FLOAT"})
    mesh = speech_mesh()
    mix = Node("mix", "APK_MixMotion", links={"reference_face": "face.reference_face", "speech_mesh": "mesh.mesh",
                                              "driving_mesh": "driving.mesh"})
    pose = Node("pose", "APK_HeadPoseTemplate", "Driving head pose, looped to the speech",
                links={"audio": "audio.audio", "fps": "fps.FLOAT", "pose_sequence": "driving.pose"})
    project = Node("project", "APK_ProjectLandmarks", links={"reference_face": "face.reference_face",
                                                             "mesh": "mix.mesh", "pose": "pose.pose"})
    render = Node("render", "APK_RenderPoseImage", links={"landmarks": "project.landmarks"})
    return [[about, portrait(), speech],
            [*driving_video("Driving video (pick a file)", "driving_video.mp4"), *size_settings()],
            [reference_face(), track, driving],
            [*mesh, mix, pose],
            [project, motion_preview("project.landmarks"), render],
            [video_models(), reference_encode("face.image")],
            [sampler("render.pose_images"), video_combine("audio.audio", "fps.FLOAT")]]


WORKFLOWS = {
    "audio_driven": audio_driven,
    "audio_driven_pose_template": audio_driven_pose_template,
    "audio_driven_fast": audio_driven_fast,
    "pose_video_driven": pose_video_driven,
    "face_reenactment": face_reenactment,
    "audio_driven_long": audio_driven_long,
    "audio_driven_motion_edit": audio_driven_motion_edit,
    "audio_driven_with_driving_video": audio_driven_with_driving_video,
}


# ---------------------------------------------------------------------------------------------------------------
# description -> UI-format JSON (the layout the editor itself saves, version 0.4)


def socket_inputs(info: dict) -> list[tuple[str, str, bool]]:
    """(name, type, optional) of the inputs that are sockets only; the editor lists them first."""
    order = info.get("input_order") or {}
    result = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            type_name, options = input_spec(info, name)
            if type_name not in WIDGET_TYPES or options.get("forceInput"):
                result.append((name, type_name, section == "optional"))
    return result


def default_value(info: dict, name: str) -> Any:
    type_name, options = input_spec(info, name)
    if "default" in options:
        return options["default"]
    spec = (info["input"].get("required") or {}).get(name) or info["input"]["optional"][name]
    choices = spec[0] if isinstance(spec[0], list) else options.get("options") or []
    if not choices:
        raise ValueError(f"{info['name']}: the input '{name}' has no default; set it in the description")
    return choices[0]


def widget_values(node: Node, info: dict) -> list:
    slots = widget_slots(info)
    unknown = set(node.widgets) - {slot.name for slot in slots if slot.sent}
    if unknown:
        raise ValueError(f"{node.key} ({node.type}) has no widget(s) {sorted(unknown)}")
    return [EDITOR_WIDGET_VALUES[slot.name] if not slot.sent
            else node.widgets[slot.name] if slot.name in node.widgets else default_value(info, slot.name)
            for slot in slots]


def node_height(node: Node, info: dict | None) -> int:
    if info is None:
        return 360
    sockets = max(len(socket_inputs(info)), len(info["output"]))
    return 30 + 22 * sockets + 24 * len(widget_slots(info)) + PREVIEW_HEIGHT.get(node.type, 0)


def node_sockets(node: Node, info: dict, link_into: dict[str, int], links_from: dict[int, list[int]]) -> dict:
    inputs = [{"localized_name": name, "name": name, "type": type_name, "link": link_into.get(name),
               **({"shape": 7} if optional else {})} for name, type_name, optional in socket_inputs(info)]
    inputs += [{"localized_name": slot.name, "name": slot.name, "type": slot.socket_type,
                "widget": {"name": slot.name}, "link": link_into.get(slot.name)}
               for slot in widget_slots(info) if slot.socket_type]
    unknown = set(node.links) - {i["name"] for i in inputs}
    if unknown:
        raise ValueError(f"{node.key} ({node.type}) has no input(s) {sorted(unknown)}")
    outputs = [{"localized_name": name, "name": name, "type": type_name, "links": links_from.get(slot, [])}
               for slot, (name, type_name) in enumerate(zip(info["output_name"], info["output"]))]
    return {"inputs": inputs, "outputs": outputs}


def one_line_description(nodes: list[Node]) -> str:
    """What the template browser shows under the workflow's name: the first plain line of its Read me note (else
    the note's heading)."""
    notes = [node.widgets["text"] for node in nodes if node.type == NOTE]
    if not notes:
        return ""
    lines = [line.strip() for line in notes[0].splitlines() if line.strip()]
    heading = next((line.lstrip("#").strip() for line in lines if line.startswith("#")), "")
    plain = [line for line in lines if not line.startswith(("#", "-", "*")) and not line[0].isdigit()]
    return plain[0] if plain else heading.removeprefix("AniPortrait:").strip()


def build(layout: Columns, object_info: dict) -> dict:
    nodes = [node for column in layout for node in column]
    column_of = {node.key: index for index, column in enumerate(layout) for node in column}
    keys = [n.key for n in nodes]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate node keys in {keys}")
    missing = sorted({n.type for n in nodes if n.type != NOTE and n.type not in object_info})
    if missing:
        raise ValueError(f"the server does not know the node types {missing}")
    ids = {key: i + 1 for i, key in enumerate(keys)}
    by_key = {n.key: n for n in nodes}
    links = []  # [id, from node, from slot, to node, to input NAME (made an index below), type]
    for target in nodes:
        for input_name, ref in target.links.items():
            source_key, output_name = ref.split(".")
            source_info = object_info[by_key[source_key].type]
            slot = source_info["output_name"].index(output_name)
            links.append([len(links) + 1, ids[source_key], slot, ids[target.key], input_name,
                          source_info["output"][slot]])

    serialized, next_y = [], {}
    for position, node in enumerate(nodes):
        info = None if node.type == NOTE else object_info[node.type]
        column = column_of[node.key]
        y = next_y.get(column, 40)
        height = node_height(node, info)
        next_y[column] = y + height + GAP
        entry: dict[str, Any] = {"id": ids[node.key], "type": node.type, "pos": [40 + column * COLUMN_WIDTH, y],
                                 "size": [NODE_WIDTH, height], "flags": {}, "order": position, "mode": 0}
        if info is None:
            entry.update(inputs=[], outputs=[], properties={}, widgets_values=[node.widgets["text"]],
                         color="#432", bgcolor="#653")
        else:
            link_into = {link[4]: link[0] for link in links if link[3] == ids[node.key]}
            links_from: dict[int, list[int]] = {}
            for link in links:
                if link[1] == ids[node.key]:
                    links_from.setdefault(link[2], []).append(link[0])
            entry.update(node_sockets(node, info, link_into, links_from),
                         properties={"Node name for S&R": node.type}, widgets_values=widget_values(node, info))
        if node.title:
            entry["title"] = node.title
        serialized.append(entry)

    inputs_of = {entry["id"]: [i["name"] for i in entry["inputs"]] for entry in serialized}
    for link in links:
        link[4] = inputs_of[link[3]].index(link[4])
    serialized.sort(key=lambda entry: entry["id"])
    workflow = {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": serialized, "links": links,
                "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]},
                                                      "description": one_line_description(nodes)}, "version": 0.4}
    return arrange(workflow, object_info)  # positions by stage, groups, and the view it opens at


def write_workflows(object_info: dict, folder: Path = WORKFLOW_DIR) -> list[Path]:
    written = []
    for name, describe in WORKFLOWS.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(build(describe(), object_info), indent=1, ensure_ascii=False) + "\n")
        written.append(path)
    return written


def fetch_object_info(server: str | None) -> dict:
    if server:
        return ComfyClient(server).object_info()
    comfy_root = Path(os.environ.get("ANIPORTRAIT_COMFY_ROOT", Path.home() / ".cache" / "aniportrait-comfyui"))
    with tempfile.TemporaryDirectory(prefix="aniportrait-build-") as base, \
            ComfyServer.from_install(comfy_root, packs=[(PACK_FOLDER_NAME, PACK_DIR)], base_dir=Path(base),
                                     env=OFFLINE_ENV) as temporary:
        return fetch_object_info(temporary.url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", help="URL of a running ComfyUI with this pack (default: start a temporary one)")
    args = parser.parse_args(argv)
    for path in write_workflows(fetch_object_info(args.server)):
        print(f"wrote {path.relative_to(PACK_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
