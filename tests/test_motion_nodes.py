"""The motion nodes in a real ComfyUI: edits reach the saved motion (measured on its landmarks), the preview is a
video of the motion's length with the speech, Save -> Load Motion round trips through the output folder, file
names cannot leave their folder, and Paste Back returns the portrait's resolution."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from PIL import Image

from aniportrait.data import PoseSequence
from aniportrait.motion.motion_file import Motion, load_motion, save_motion
from aniportrait.motion.regions import LID_MIDDLES, LIPS
from aniportrait.video_io import read_audio_track, read_video_frames
from tests.harness.graph import Graph
from tests.workflow_inputs import SIZE, speech_frames

pytestmark = pytest.mark.server

SECONDS = 0.6
BLINK_AT = 0.3   # seconds


@pytest.fixture(scope="module")
def inputs(client, assets_dir, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("motion-inputs")
    speech, rate = soundfile.read(assets_dir / "lyl.wav", dtype="float32")
    soundfile.write(folder / "speech.wav", speech[:round(SECONDS * rate)], rate)
    return {"speech": client.upload(folder / "speech.wav", "apk_motion_speech.wav"),
            "portrait": client.upload(assets_dir / "lyl.png", "apk_motion_portrait.png")}


def _saved_files(comfy_server, run, node) -> list:
    """Files a node reports, in the output or (previews) the temp folder."""
    return [comfy_server.base_dir / entry["type"] / entry["subfolder"] / entry["filename"]
            for entry in run.outputs[node.id]["images"]]


def test_edited_motion_is_previewed_saved_and_loaded_again(client, comfy_server, inputs):
    graph = Graph(client.object_info())
    portrait = graph.add("LoadImage", upload=inputs["portrait"])
    reference = graph.add("APK_ReferenceFace", portrait, width=SIZE, height=SIZE)
    speech = graph.add("APK_LoadAudio", upload=inputs["speech"])
    mesh = graph.add("APK_Audio2Mesh", graph.add("APK_LoadAudio2MeshModel"), speech)
    pose = graph.add("APK_Audio2Pose", graph.add("APK_LoadAudio2PoseModel"), speech)
    closed = graph.add("APK_MouthAmplitude", reference, mesh, amplitude=0.0)
    blinked = graph.add("APK_EyeBlinks", reference, closed, times=str(BLINK_AT))
    still = graph.add("APK_HeadMotion", pose, rotation_scale=0.0, translation_scale=0.0)
    landmarks = graph.add("APK_ProjectLandmarks", reference, blinked, still)
    preview = graph.add("APK_MotionPreview", landmarks, speech, reference)
    save = graph.add("APK_SaveMotion", mesh=blinked.out(0), pose=still.out(0), landmarks=landmarks.out(0),
                     filename_prefix="motion_test/edited")
    run = client.run(graph.prompt, timeout=600)
    assert run.status == "success", run.describe()

    frames = speech_frames(SECONDS)
    [video] = _saved_files(comfy_server, run, preview)
    picture, fps = read_video_frames(video)
    assert len(picture) == frames and fps == 30 and picture.shape[1:] == (SIZE, SIZE, 3)
    audio = read_audio_track(video)
    assert audio is not None and abs(audio.duration - frames / 30) < 0.01

    [saved] = sorted((comfy_server.output_dir / "motion_test").glob("edited_*_.npz"))
    assert saved.name in run.outputs[save.id]["text"][0]
    motion = load_motion(saved)
    points = motion.landmarks.points
    assert len(points) == len(motion.mesh.offsets) == frames and motion.landmarks.fps == 30
    lips = points[:, list(LIPS)]
    np.testing.assert_allclose(lips, np.broadcast_to(lips[:1], lips.shape), atol=1e-6)   # amplitude 0, still head
    np.testing.assert_array_equal(motion.pose.poses, 0)
    openings = np.stack([np.linalg.norm(points[:, upper] - points[:, lower], axis=-1) for upper, lower in LID_MIDDLES])
    blink_frame = round(BLINK_AT * 30)
    assert openings[:, blink_frame].max() < 1e-6 < openings[:, 0].min()   # shut at the blink, open at the start

    # load it back from the output folder and use it: the same landmarks come out of the projection again
    again = Graph(client.object_info())
    reference = again.add("APK_ReferenceFace", again.add("LoadImage", upload=inputs["portrait"]), width=SIZE,
                          height=SIZE)
    loaded = again.add("APK_LoadMotion", motion=f"motion_test/{saved.name} [output]")
    projected = again.add("APK_ProjectLandmarks", reference, loaded.out(0), loaded.out(1))
    again.add("APK_SaveMotion", landmarks=projected.out(0), filename_prefix="motion_test/reloaded")
    run = client.run(again.prompt)
    assert run.status == "success", run.describe()
    [reloaded] = sorted((comfy_server.output_dir / "motion_test").glob("reloaded_*_.npz"))
    np.testing.assert_allclose(load_motion(reloaded).landmarks.points, points, atol=1e-9)


def test_motion_from_the_input_folder_and_a_prefix_outside_the_output_folder(client, tmp_path):
    poses = np.linspace(0, 1, 60).reshape(10, 6)
    save_motion(tmp_path / "pose.npz", Motion(pose=PoseSequence(poses, 25.0)))
    graph = Graph(client.object_info())
    loaded = graph.add("APK_LoadMotion", motion=client.upload(tmp_path / "pose.npz", "apk_motion_pose.npz"))
    edited = graph.add("APK_HeadMotion", loaded.out(1), rotation_scale=2.0)
    save = graph.add("APK_SaveMotion", pose=edited.out(0), filename_prefix="../outside/motion")
    run = client.run(graph.prompt)
    assert run.status == "error" and run.error["node_id"] == save.id, run.describe()
    assert "input 'filename_prefix': '../outside/motion' points outside" in run.error["exception_message"]
    assert client.get("/system_stats")   # still serving


def test_paste_back_returns_the_portrait_resolution(client, comfy_server, inputs, assets_dir):
    graph = Graph(client.object_info())
    portrait = graph.add("LoadImage", upload=inputs["portrait"])
    reference = graph.add("APK_ReferenceFace", portrait, width=SIZE, height=SIZE, crop="auto (face-centred square)")
    cropped = reference.out(1)
    frames = graph.add("ImageScale", cropped, width=SIZE, height=SIZE)   # stands in for the sampler's frames
    pasted = graph.add("APK_PasteBack", frames=frames.out(0), portrait=portrait.out(0),
                       reference_face=reference.out(0), feather=8)
    saved = graph.add("SaveImage", pasted, filename_prefix="motion_test/pasted")
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()
    [png] = _saved_files(comfy_server, run, saved)
    result = np.array(Image.open(png).convert("RGB")).astype(int)
    original = np.array(Image.open(assets_dir / "lyl.png").convert("RGB")).astype(int)
    assert result.shape == original.shape
    # the crop went through a 128 px round trip: blurred, but the same picture in the same place
    assert np.abs(result - original).mean() < 12
