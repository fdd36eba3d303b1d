"""Videos of any length at flat memory (issue 16), in the library: pose images drawn per window from landmarks,
frames handed on per decode batch, the video file written as they come. The frames must be those of the
whole-video path, the memory held must not grow with the length beyond the latents, and an interrupted run must
leave neither a finished-looking file nor its work tensors."""
from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
import torch

from aniportrait.data import LandmarkSequence
from aniportrait.face.drawing import draw_pose_images
from aniportrait.video.pipeline import SamplerRun, SamplerSettings, generate, prepare_pose_images
from aniportrait.video.pose_source import LandmarkPoseImages
from aniportrait.video_io import VideoWriter, read_video_frames
from tests.encoded_video import assert_holds_frames, psnr
from tests.test_pipeline import SIZE, models, reference  # noqa: F401 (the tiny networks, a reference at SIZE)

SHORT = SamplerSettings(steps=2, context_frames=4, context_overlap=1, seed=5)


def landmarks_of_length(mesh_case, frames: int) -> LandmarkSequence:
    """The golden projected landmarks (128x128 canvas: the sampler resizes its images to SIZE), looped."""
    points = mesh_case["projected"]
    return LandmarkSequence(points=points[np.arange(frames) % len(points)], width=128, height=128, fps=30.0)


class CollectFrames:
    """A frame sink that keeps what it gets, and the largest batch it got."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def __call__(self, frames: torch.Tensor) -> None:
        self.batches.append(frames.clone())

    @property
    def video(self) -> torch.Tensor:
        return torch.cat(self.batches)


def test_landmark_pose_images_are_the_rendered_ones_resized(mesh_case):
    landmarks = landmarks_of_length(mesh_case, 9)
    rendered = prepare_pose_images(draw_pose_images(landmarks), SIZE, SIZE)  # Render Pose Image, then the sampler
    source = LandmarkPoseImages(landmarks, SIZE, SIZE)
    assert source.num_frames == 9
    np.testing.assert_array_equal(source.frames([7, 8, 0, 1]), rendered[[7, 8, 0, 1]])
    with pytest.raises(ValueError, match="landmarks"):
        LandmarkPoseImages(LandmarkSequence(np.zeros((0, 468, 2)), 64, 64, 30.0), SIZE, SIZE)


def test_streamed_frames_from_landmarks_are_the_image_paths_frames(models, reference, mesh_case):
    landmarks = landmarks_of_length(mesh_case, 14)
    whole = generate(models, reference, prepare_pose_images(draw_pose_images(landmarks), SIZE, SIZE), SHORT,
                     SamplerRun(decode_batch=4))
    sink = CollectFrames()
    assert generate(models, reference, LandmarkPoseImages(landmarks, SIZE, SIZE), SHORT,
                    SamplerRun(decode_batch=4, frame_sink=sink)) is None
    assert torch.equal(sink.video, whole)
    assert [len(batch) for batch in sink.batches] == [4, 4, 4, 2]


def test_written_file_holds_the_frames_of_the_image_path(models, reference, mesh_case, tmp_path):  # noqa: F811
    landmarks = landmarks_of_length(mesh_case, 10)
    whole = to_uint8(generate(models, reference, LandmarkPoseImages(landmarks, SIZE, SIZE), SHORT,
                              SamplerRun(decode_batch=3)))
    path = tmp_path / "streamed.mp4"
    with VideoWriter(path, 10, SIZE, SIZE, 30.0) as writer:
        generate(models, reference, LandmarkPoseImages(landmarks, SIZE, SIZE), SHORT,
                 SamplerRun(decode_batch=3, frame_sink=lambda frames: writer.write(to_uint8(frames))))
    reference_file = tmp_path / "whole.mp4"
    with VideoWriter(reference_file, 10, SIZE, SIZE, 30.0) as whole_writer:
        whole_writer.write(whole)
    streamed, fps = read_video_frames(path)
    assert streamed.shape == (10, SIZE, SIZE, 3) and fps == 30
    # as faithful as an encode of the whole video at once (the two differ by about 0.01 dB)
    assert_holds_frames(streamed, whole, psnr(read_video_frames(reference_file)[0], whole) - 1.0)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


# --- memory against length ----------------------------------------------------------------------------------------

def alive_tensor_bytes(latent_shape: tuple[int, ...]) -> int:
    """Bytes of the distinct storages of every tensor alive now, except the latents' (the model parameters are
    counted, but they are the same for every length)."""
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tensors = [obj for obj in gc.get_objects() if isinstance(obj, torch.Tensor) and obj.device.type == "cpu"]
    storages = {tensor.untyped_storage().data_ptr(): tensor.untyped_storage().nbytes() for tensor in tensors}
    for tensor in tensors:
        if tuple(tensor.shape) == latent_shape:
            storages.pop(tensor.untyped_storage().data_ptr(), None)
    return sum(storages.values())


class Probe:
    """Pose source + frame sink that measure what the sampler holds each time it asks for pose images (while
    denoising) and each time it hands on frames (while decoding)."""

    def __init__(self, landmarks: LandmarkSequence) -> None:
        self.source = LandmarkPoseImages(landmarks, SIZE, SIZE)
        self.num_frames = self.source.num_frames
        self.latent_shape = (1, 4, self.num_frames, SIZE // 8, SIZE // 8)
        self.most_pose_frames = self.most_sink_frames = 0
        self.most_bytes = 0

    def frames(self, indices):
        self.most_pose_frames = max(self.most_pose_frames, len(indices))
        self.most_bytes = max(self.most_bytes, alive_tensor_bytes(self.latent_shape))
        return self.source.frames(indices)

    def __call__(self, frames: torch.Tensor) -> None:
        self.most_sink_frames = max(self.most_sink_frames, len(frames))
        self.most_bytes = max(self.most_bytes, alive_tensor_bytes(self.latent_shape))


def test_memory_held_does_not_grow_with_the_length(models, reference, mesh_case):
    probes = {}
    for frames in (24, 120):
        probe = probes[frames] = Probe(landmarks_of_length(mesh_case, frames))  # the latents may grow
        # memory_budget=1: no PoseGuider feature cache (it may use a quarter of the free memory, whatever the length)
        generate(models, reference, probe, SamplerSettings(steps=2, context_frames=8, context_overlap=2),
                 SamplerRun(windows_per_call=1, decode_batch=4, memory_budget=1, frame_sink=probe))
    short, long = probes[24], probes[120]
    assert long.most_pose_frames == short.most_pose_frames == 8  # one window of pose images at a time
    assert long.most_sink_frames == short.most_sink_frames == 4  # one decode batch of frames at a time
    # everything else the sampler holds (work tensors, accumulators, pose images, frames) is the same for five
    # times the frames: a whole-video accumulator alone would add (1 + 2 CFG rows) x 96 frames x 1 KB
    frame_latent = 4 * (SIZE // 8) ** 2 * 4
    assert long.most_bytes - short.most_bytes < 4 * frame_latent, (short.most_bytes, long.most_bytes)


# --- interrupts -----------------------------------------------------------------------------------------------------

class Cancelled(Exception):
    pass


def test_interrupted_writer_leaves_no_file(tmp_path):
    path = tmp_path / "video.mp4"
    with pytest.raises(Cancelled):
        with VideoWriter(path, 10, 32, 32, 30.0) as writer:
            writer.write(np.zeros((4, 32, 32, 3), np.uint8))
            assert not path.exists()  # (the encoder may not have written anything to the .partial yet)
            raise Cancelled
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="opened for 10 frames but got 4"):
        with VideoWriter(path, 10, 32, 32, 30.0) as writer:
            writer.write(np.zeros((4, 32, 32, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_interrupt_while_writing_leaves_no_file_and_frees_the_work(models, reference, mesh_case, tmp_path):
    frames = 29  # a frame count no other tensor has
    path = tmp_path / "video.mp4"
    written = []

    def interrupt_after_the_first_batch():
        if written:
            raise Cancelled

    def write(batch):
        writer.write(to_uint8(batch))
        written.append(len(batch))

    with pytest.raises(Cancelled):
        with VideoWriter(path, frames, SIZE, SIZE, 30.0) as writer:
            generate(models, reference, LandmarkPoseImages(landmarks_of_length(mesh_case, frames), SIZE, SIZE), SHORT,
                     SamplerRun(decode_batch=5, frame_sink=write, check_interrupt=interrupt_after_the_first_batch))
    assert written == [5]
    assert list(tmp_path.iterdir()) == []
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [obj.shape for obj in gc.get_objects()
                if isinstance(obj, torch.Tensor) and frames in obj.shape] == []
