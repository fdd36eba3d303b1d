"""The geometry nodes in a real ComfyUI: face reenactment (Retarget Face -> Render Pose Image), the head-pose
template (saved .npy), the audio-driven projection, and clear errors.

Expected pose images are computed in this process with the library on the same inputs (MediaPipe is deterministic
on one machine), so the node adapters (channel order, sizes, frame rates, IMAGE conversion) are what is checked.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
from PIL import Image

from aniportrait.face.drawing import draw_pose_image
from aniportrait.face.landmarker import FaceLandmarker
from aniportrait.face.reference import analyse_reference
from aniportrait.face.retarget import retarget_face
from aniportrait.face.track import track_faces
from aniportrait.video_io import read_video_frames
from tests.harness.graph import Graph

pytestmark = pytest.mark.server

SIZE = 128


def _saved(comfy_server, run, node) -> list:
    return [comfy_server.output_dir / entry["subfolder"] / entry["filename"] for entry in run.outputs[node.id]["images"]]


def _reference_and_video(client, graph: Graph, golden_dir):
    reference = graph.add("APK_ReferenceFace", graph.add("LoadImage", upload=client.upload(golden_dir / "cases" /
                                                                                           "ref_image.png")),
                          width=SIZE, height=SIZE)
    video = graph.add("GetVideoComponents", graph.add("LoadVideo", upload=client.upload(golden_dir / "cases" /
                                                                                         "pose_ref_video.mp4")))
    track = graph.add("APK_VideoFaceLandmarks", video.out(0), fps=25.0)
    return reference, track


def _library_landmarks(golden_dir, assets_dir):
    """What the nodes should compute, straight from the library."""
    frames, fps = read_video_frames(golden_dir / "cases" / "pose_ref_video.mp4")
    portrait = np.array(Image.open(golden_dir / "cases" / "ref_image.png").convert("RGB"))
    with FaceLandmarker(assets_dir / "face_landmarker_v2_with_blendshapes.task") as landmarker:
        reference, _ = analyse_reference(landmarker, portrait, SIZE, SIZE)
        track = track_faces(frames, landmarker, float(fps))
    return reference.face, track


def test_reenactment_pose_images_and_template(client, comfy_server, golden_dir, assets_dir):
    graph = Graph(client.object_info())
    reference, track = _reference_and_video(client, graph, golden_dir)
    landmarks = graph.add("APK_RetargetFace", track, reference)          # defaults: 30 fps, window 3, auto size
    render = graph.add("APK_RenderPoseImage", landmarks, reference)
    count = graph.add("PreviewAny", graph.add("GetImageSize", render.out(0)).out(2))
    first = graph.add("SaveImage", graph.add("ImageFromBatch", render.out(0), batch_index=10, length=1),
                      filename_prefix="geometry/pose")
    reference_pose = graph.add("SaveImage", render.out(1), filename_prefix="geometry/reference_pose")
    template = graph.add("APK_PoseTemplate", track, filename_prefix="geometry/template")
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()

    # 125 frames at 25 fps resampled to 30 fps: instants k/30 up to 124/25 s
    assert run.outputs[count.id]["text"] == [str(math.floor(124 * 30 / 25) + 1)]
    reference_face, face_track = _library_landmarks(golden_dir, assets_dir)
    expected = retarget_face(face_track, reference_face, fps=30.0)
    raw = draw_pose_image(expected.points[10], expected.width, expected.height, output_size=expected.output_size)
    [pose_png] = _saved(comfy_server, run, first)
    np.testing.assert_array_equal(np.array(Image.open(pose_png)), raw[..., ::-1])   # display RGB = reversed raw
    [reference_png] = _saved(comfy_server, run, reference_pose)
    expected_reference = draw_pose_image(reference_face.lmks, SIZE, SIZE, normalized=True)
    np.testing.assert_array_equal(np.array(Image.open(reference_png)), expected_reference[..., ::-1])

    [text] = run.outputs[template.id]["text"]
    saved = sorted((comfy_server.output_dir / "geometry").glob("template_*_.npy"))
    assert len(saved) == 1 and saved[0].name in text
    poses = np.load(saved[0])
    golden = np.load(golden_dir / "cases" / "k_pose_template.npz")["pose_temp"]
    assert poses.dtype == np.float64 and poses.shape == golden.shape == (150, 6)
    np.testing.assert_allclose(poses, golden, rtol=0, atol=2e-2)   # MediaPipe 1.2.2 vs the golden's 0.10.11


def test_original_frame_rate_and_no_reference(client, comfy_server, golden_dir):
    """fps 0 keeps the driving rate (AniPortrait); without a reference face the reference pose is black."""
    graph = Graph(client.object_info())
    reference, track = _reference_and_video(client, graph, golden_dir)
    landmarks = graph.add("APK_RetargetFace", track, reference, fps=0.0)
    render = graph.add("APK_RenderPoseImage", landmarks)
    count = graph.add("PreviewAny", graph.add("GetImageSize", render.out(0)).out(2))
    black = graph.add("SaveImage", render.out(1), filename_prefix="geometry/black")
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()
    assert run.outputs[count.id]["text"] == ["125"]
    [png] = _saved(comfy_server, run, black)
    image = np.array(Image.open(png))
    assert image.shape == (SIZE, SIZE, 3) and image.max() == 0


def test_template_from_a_single_image_is_a_clear_error(client, comfy_server, golden_dir):
    graph = Graph(client.object_info())
    still = graph.add("LoadImage", upload=client.upload(golden_dir / "cases" / "ref_image.png"))
    track = graph.add("APK_VideoFaceLandmarks", still)
    graph.add("APK_PoseTemplate", track, filename_prefix="")
    run = client.run(graph.prompt)
    assert run.status == "error"
    assert run.error["node_type"] == "APK_PoseTemplate"
    assert "at least 2 frames" in run.error["exception_message"]
    assert client.get("/system_stats")  # still serving


def test_audio_driven_landmarks(client, comfy_server, assets_dir):
    """Audio2Mesh + Audio2Pose -> Project Landmarks -> Render Pose Image: one pose image per 1/30 s of speech."""
    graph = Graph(client.object_info())
    reference = graph.add("APK_ReferenceFace", graph.add("LoadImage", upload=client.upload(assets_dir / "lyl.png")),
                          width=SIZE, height=SIZE)
    speech = graph.add("APK_LoadAudio", upload=client.upload(assets_dir / "lyl.wav"))
    mesh = graph.add("APK_Audio2Mesh", graph.add("APK_LoadAudio2MeshModel"), speech)
    pose = graph.add("APK_Audio2Pose", graph.add("APK_LoadAudio2PoseModel"), speech)
    landmarks = graph.add("APK_ProjectLandmarks", reference, mesh, pose)
    render = graph.add("APK_RenderPoseImage", landmarks, reference)
    size = graph.add("GetImageSize", render.out(0))
    counts = [graph.add("PreviewAny", size.out(index)) for index in range(3)]
    run = client.run(graph.prompt, timeout=600)
    assert run.status == "success", run.describe()
    width, height, frames = (int(run.outputs[node.id]["text"][0]) for node in counts)
    info = soundfile.info(str(assets_dir / "lyl.wav"))
    assert (width, height) == (SIZE, SIZE)
    assert frames == math.ceil(info.frames / info.samplerate * 30)
