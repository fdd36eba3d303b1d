"""Motion from two sources combined per face region (e.g. the mouth from speech, eyes and brows from a driving
video), and a driving video's motion as the audio path's mesh offsets + relative head pose."""
from __future__ import annotations

import numpy as np

from ..data import FaceTrack, MeshSequence, PoseSequence, same_fps
from ..face.pose_template import relative_head_poses
from ..face.retarget import neutral_frame, resample_to_fps
from ..smoothing import smooth_pose_seq
from .edits import checked_offsets
from .looping import ping_pong
from .regions import REGIONS, region_weights

SOURCES = ("speech", "driving")


def track_motion(track: FaceTrack, fps: float, window: int) -> tuple[MeshSequence, PoseSequence]:
    """A driving video's motion at ``fps``: expression offsets (each frame's canonical mesh minus the most
    neutral frame's, as face reenactment measures them) and the head pose relative to the first frame (as a
    head-pose template), smoothed over ``window`` frames. Both are resampled the same way, so they have the same
    length."""
    if len(track.trans_mat) < 2:
        raise ValueError(f"AniPortrait: a driving motion needs a video of at least 2 frames, got "
                         f"{len(track.trans_mat)}.")
    meshes, poses, blendshapes = (resample_to_fps(np.asarray(values, dtype=np.float64), track.fps, fps)
                                  for values in (track.lmks3d, relative_head_poses(track.trans_mat),
                                                 track.blendshapes))
    offsets = meshes - meshes[neutral_frame(blendshapes)]
    return MeshSequence(offsets, float(fps)), PoseSequence(smooth_pose_seq(poses, window), float(fps))


def mix_meshes(speech: MeshSequence, driving: MeshSequence, reference_mesh: np.ndarray, sources: dict[str, str],
               fade_cm: float) -> MeshSequence:
    """Per-vertex blend of two offset sequences: each region in REGIONS (and "rest", everything else) takes the
    source named in ``sources``; region borders fade over ``fade_cm`` cm. The result has the speech's length;
    a shorter or longer driving motion is looped forwards and backwards (as Head Pose Template loops a pose)."""
    speech_offsets = checked_offsets(speech, reference_mesh)
    driving_offsets = checked_offsets(driving, reference_mesh)
    if not same_fps(speech.fps, driving.fps):
        raise ValueError(f"AniPortrait: the speech motion is at {speech.fps:g} fps but the driving motion at "
                         f"{driving.fps:g} fps. Make the driving motion at the same fps.")
    unknown = {name: source for name, source in sources.items() if source not in SOURCES}
    if unknown or set(sources) != set(REGIONS) | {"rest"}:
        raise ValueError(f"AniPortrait: every region of {REGIONS + ('rest',)} needs a source in {SOURCES}, got "
                         f"{sources}.")
    weights = np.stack([region_weights(name, reference_mesh, fade_cm) for name in REGIONS])
    weights /= np.maximum(weights.sum(axis=0), 1.0)          # overlapping fades share a vertex
    driving_share = sum(weight for name, weight in zip(REGIONS, weights) if sources[name] == "driving")
    if sources["rest"] == "driving":
        driving_share = driving_share + (1.0 - weights.sum(axis=0))
    share = np.asarray(driving_share, dtype=np.float64)[None, :, None]
    looped = ping_pong(driving_offsets, len(speech_offsets))
    return MeshSequence(speech_offsets * (1.0 - share) + looped * share, speech.fps)
