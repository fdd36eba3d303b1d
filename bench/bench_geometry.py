"""Geometry speed: projection, pose-image rendering and face retargeting for a long clip (default 1800 frames =
60 s at 30 fps).

    ~/.cache/aniportrait-comfyui/venv/bin/python -m bench.bench_geometry [--frames N] [--size S] [--repeats N]

Inputs are the golden arrays tiled to N frames (c_mesh_projection: reference face, Audio2Mesh offsets, poses;
j_reenactment: driving-frame MediaPipe results). Projection is timed batched (what the nodes run) and frame by
frame (the original's loop structure), rendering at S x S (the 512 canvas resized) alone and as the render node
runs it (chunks converted into a float IMAGE batch). Best of N passes, one process. Writes bench/results/geometry.json and .md.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.common import SHARED, best_seconds, machine_description, write_results
from aniportrait.data import FaceAnalysis, FaceTrack, LandmarkSequence
from aniportrait.face.drawing import draw_pose_image, draw_pose_images, raw_to_display
from aniportrait.face.projection import project_mesh_sequence
from aniportrait.face.retarget import retarget_face

CASES = SHARED / "golden" / "cases"


def tiled(array: np.ndarray, count: int) -> np.ndarray:
    return np.resize(array, (count,) + array.shape[1:])


def golden_face_motion(count: int, size: int) -> tuple[FaceAnalysis, np.ndarray, np.ndarray]:
    """The golden reference face (at ``size`` x ``size``) with its Audio2Mesh offsets and poses tiled to ``count``
    frames."""
    mesh = np.load(CASES / "c_mesh_projection.npz")
    offsets = tiled(np.load(CASES / "a_audio2mesh.npz")["a2m_out"].reshape(-1, 468, 3), count)
    face = FaceAnalysis(lmks=mesh["mp_lmks"], lmks3d=mesh["mp_lmks3d"], trans_mat=mesh["mp_trans_mat"],
                        blendshapes=mesh["mp_bs"], width=size, height=size)
    return face, offsets, tiled(mesh["pose_seq"], count)


def render_into(images: torch.Tensor, landmarks: LandmarkSequence, chunk: int = 32) -> None:
    """What APK_RenderPoseImage runs: draw a chunk, reverse to display RGB, convert to float, store."""
    for start in range(0, len(landmarks.points), chunk):
        raw = draw_pose_images(landmarks, slice(start, start + chunk))
        images[start:start + len(raw)] = torch.from_numpy(raw_to_display(raw)).float() / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1800)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    count, size = args.frames, args.size

    face, offsets, poses = golden_face_motion(count, size)
    batched_s = best_seconds(lambda: project_mesh_sequence(face, offsets, poses), args.repeats)
    per_frame_s = best_seconds(lambda: [project_mesh_sequence(face, offsets[i:i + 1], poses[i:i + 1])
                                        for i in range(count)], args.repeats)

    points = project_mesh_sequence(face, offsets, poses)
    draw_s = best_seconds(lambda: [draw_pose_image(p, size, size) for p in points], args.repeats)
    images = torch.empty((count, size, size, 3), dtype=torch.float32)   # the IMAGE batch, allocated once
    landmarks = LandmarkSequence(points=points, width=size, height=size, fps=30.0)
    node_s = best_seconds(lambda: render_into(images, landmarks), args.repeats)

    driving = np.load(CASES / "j_reenactment.npz")
    track = FaceTrack(lmks=tiled(driving["src_lmks"], count), lmks3d=tiled(driving["src_lmks3d"], count),
                      trans_mat=tiled(driving["src_trans_mat"], count), blendshapes=tiled(driving["src_bs"], count),
                      width=192, height=192, fps=25.0)
    reference = FaceAnalysis(lmks=driving["ref_lmks"], lmks3d=driving["ref_lmks3d"], trans_mat=driving["ref_trans_mat"],
                             blendshapes=driving["ref_bs"], width=size, height=size)
    retarget_s = best_seconds(lambda: retarget_face(track, reference, fps=30.0), args.repeats)
    retarget_frames = len(retarget_face(track, reference, fps=30.0).points)

    result = {
        "frames": count, "size": size, "repeats": args.repeats,
        "projection_batched_fps": count / batched_s,
        "projection_per_frame_fps": count / per_frame_s,
        "projection_batched_speedup": per_frame_s / batched_s,
        "render_fps": count / draw_s,
        "render_ms_per_frame": 1000 * draw_s / count,
        "render_to_image_fps": count / node_s,
        "image_batch_gib": images.numel() * 4 / 2**30,
        "retarget_25_to_30fps_output_fps": retarget_frames / retarget_s,
        "retarget_output_frames": retarget_frames,
        "seconds_for_clip": {"projection": batched_s, "render": draw_s, "render_to_image": node_s,
                             "retarget": retarget_s},
        "machine": machine_description(),
    }
    write_results("geometry", result,
        f"# Geometry speed\n\n"
        f"{count} frames (golden inputs tiled), output {size}x{size}; best of {args.repeats} passes, one process, "
        f"CPU.\n\n"
        f"| what | frames/s | seconds for the clip |\n|---|---|---|\n"
        f"| projection, batched (nodes) | {result['projection_batched_fps']:.0f} | {batched_s:.3f} |\n"
        f"| projection, frame by frame (original's loop) | {result['projection_per_frame_fps']:.0f} | "
        f"{per_frame_s:.3f} |\n"
        f"| pose-image rendering (512 canvas + resize) | {result['render_fps']:.0f} | {draw_s:.3f} |\n"
        f"| rendering + display RGB float IMAGE (the node) | {result['render_to_image_fps']:.0f} | {node_s:.3f} |\n"
        f"| retarget 25 -> 30 fps (output frames) | {result['retarget_25_to_30fps_output_fps']:.0f} | "
        f"{retarget_s:.3f} |\n\n"
        f"Batched projection is {result['projection_batched_speedup']:.1f}x the frame-by-frame loop. "
        f"Rendering costs {result['render_ms_per_frame']:.2f} ms per frame. The IMAGE batch itself takes "
        f"{result['image_batch_gib']:.2f} GiB (float32, ComfyUI's format).\n")


if __name__ == "__main__":
    main()
