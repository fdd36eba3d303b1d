"""Motion preview speed: landmarks -> preview frames -> H.264 video with the speech muxed in, as Motion Preview
(AniPortrait) runs it, on the CPU. Target: at least 100 frames/s at 512x512.

    ~/.cache/aniportrait-comfyui/venv/bin/python -m bench.bench_motion_preview [--frames N] [--size S] [--repeats N]

Inputs (from ../shared, or ANIPORTRAIT_SHARED) are the golden arrays tiled to N frames (c_mesh_projection:
reference face and poses; a_audio2mesh: offsets) and N/30 s of the golden speech. Render Pose Image's drawing
(the sampler's pose images) is timed in the same run for comparison. Best of N passes, one process, OpenCV
limited to 2 threads. Writes bench/results/motion_preview.json and .md.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import soundfile

from bench.bench_geometry import CASES, golden_face_motion
from bench.common import best_seconds, machine_description, write_results
from aniportrait.data import LandmarkSequence
from aniportrait.face.drawing import draw_pose_images
from aniportrait.face.projection import project_mesh_sequence
from aniportrait.motion.preview import preview_frames
from aniportrait.video_io import AudioTrack, write_video

FPS = 30.0
PREVIEW_OPTIONS = {"preset": "ultrafast"}   # what the node passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(2)
    count, size = args.frames, args.size

    landmarks = LandmarkSequence(project_mesh_sequence(*golden_face_motion(count, size)), size, size, FPS)
    speech, rate = soundfile.read(CASES / "audio.wav", dtype="float32")
    audio = AudioTrack(np.resize(speech, round(count / FPS * rate))[None], rate)
    portrait = np.full((size, size, 3), 128, np.uint8)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "preview.mp4"
        frames = preview_frames(landmarks)

        def node() -> None:
            write_video(path, preview_frames(landmarks), FPS, audio, "mp4", video_options=PREVIEW_OPTIONS)

        node_s = best_seconds(node, args.repeats)
        over_portrait_s = best_seconds(
            lambda: write_video(path, preview_frames(landmarks, portrait), FPS, audio, "mp4",
                                video_options=PREVIEW_OPTIONS), args.repeats)
        draw_s = best_seconds(lambda: preview_frames(landmarks), args.repeats)
        encode_s = best_seconds(lambda: write_video(path, frames, FPS, audio, "mp4", video_options=PREVIEW_OPTIONS),
                                args.repeats)
        pose_images_s = best_seconds(lambda: draw_pose_images(landmarks), args.repeats)

    result = {"machine": machine_description(), "frames": count, "size": size, "repeats": args.repeats,
              "preview_fps": count / node_s, "preview_over_portrait_fps": count / over_portrait_s,
              "draw_fps": count / draw_s, "encode_fps": count / encode_s, "pose_images_fps": count / pose_images_s,
              "target_fps": 100, "meets_target": count / node_s >= 100}
    markdown = (f"# Motion preview speed\n\n{count} frames at {size}x{size}, {count / FPS:.0f} s of speech muxed in; "
                f"best of {args.repeats} passes, one process, CPU ({result['machine']}).\n\n"
                "| what | frames/s |\n|---|---|\n"
                f"| Motion Preview: draw + H.264 (ultrafast) + AAC, black background | {result['preview_fps']:.0f} |\n"
                f"| the same over the dimmed portrait | {result['preview_over_portrait_fps']:.0f} |\n"
                f"| drawing alone | {result['draw_fps']:.0f} |\n"
                f"| encoding alone | {result['encode_fps']:.0f} |\n"
                f"| Render Pose Image's drawing (512 canvas + resize), for comparison | "
                f"{result['pose_images_fps']:.0f} |\n\n"
                f"Target >= 100 frames/s: {'met' if result['meets_target'] else 'NOT met'}.\n")
    write_results("motion_preview", result, markdown)


if __name__ == "__main__":
    main()
