"""Face landmark extraction speed on the pose reference video: MediaPipe alone vs MediaPipe + the geometry port.

    ~/.cache/aniportrait-comfyui/venv/bin/python -m bench.bench_landmarks [--video PATH] [--task PATH] [--repeats N]

Frames are decoded once (RGB, aniportrait.video_io) before timing. (a) times MediaPipe's FaceLandmarker alone
(landmarks, blendshapes and its transformation matrix); (b) times what the nodes run per frame: MediaPipe + conversion to
arrays + the face-geometry port (``lmks3d``, ``trans_mat``). Both in one process, best of N passes over the video.
Writes bench/results/landmarks.json and .md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import SHARED, best_seconds, machine_description, write_results
from aniportrait.face.geometry import face_geometry
from aniportrait.face.landmarker import FaceLandmarker
from aniportrait.video_io import read_video_frames

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=SHARED / "assets" / "pose_ref_video.mp4")
    parser.add_argument("--task", type=Path, default=SHARED / "assets" / "face_landmarker_v2_with_blendshapes.task")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    frames, _ = read_video_frames(args.video)
    with FaceLandmarker(args.task) as landmarker:
        landmarker.analyse(frames[0])   # warm-up (graph start, XNNPACK set-up)
        mediapipe_s = best_seconds(lambda: [landmarker.detect(frame) for frame in frames], args.repeats)
        full_s = best_seconds(lambda: [landmarker.analyse(frame) for frame in frames], args.repeats)
        faces = [landmarker.analyse(frame) for frame in frames]
        height, width = frames.shape[1:3]
        found = [f for f in faces if f is not None]
        port_s = best_seconds(lambda: [face_geometry(face.lmks, width, height, landmarker.metadata) for face in found],
                              args.repeats)

    count = len(frames)
    result = {
        "video": args.video.name, "frames": count, "size": [int(width), int(height)],
        "frames_with_face": len(found), "repeats": args.repeats,
        "mediapipe_only_fps": count / mediapipe_s,
        "mediapipe_plus_port_fps": count / full_s,
        "port_only_ms_per_frame": 1000 * port_s / len(found),
        "port_share_of_full": 1 - mediapipe_s / full_s,
        "machine": machine_description(),
    }
    write_results("landmarks", result,
        f"# Landmark extraction speed\n\n"
        f"{count} frames of `{args.video.name}` ({width}x{height}), decoded with PyAV beforehand; best of "
        f"{args.repeats} passes, one process, CPU.\n\n"
        f"| what | frames/s |\n|---|---|\n"
        f"| (a) MediaPipe FaceLandmarker alone | {result['mediapipe_only_fps']:.1f} |\n"
        f"| (b) MediaPipe + arrays + geometry port (what the nodes run) | {result['mediapipe_plus_port_fps']:.1f} |\n\n"
        f"Geometry port alone: {result['port_only_ms_per_frame']:.2f} ms per frame "
        f"({100 * result['port_share_of_full']:.1f} % of (b)). Faces found in {len(found)} of {count} frames.\n")


if __name__ == "__main__":
    main()
