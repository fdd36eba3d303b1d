"""Speech -> face motion: Audio2Mesh (lip-sync vertex offsets), Audio2Pose (head pose) and their input/output
handling (spec §1.2, §2, §3)."""
from .audio2mesh import Audio2MeshModel, load_audio2mesh
from .audio2pose import Audio2PoseModel, load_audio2pose
from .head_pose import head_pose_from_audio, loop_pose_template
from .waveform import (decode_audio_file, frame_count, load_speech_file, normalize_speech,
                       speech_from_comfy_audio)

__all__ = ["Audio2MeshModel", "Audio2PoseModel", "decode_audio_file", "frame_count", "head_pose_from_audio",
           "load_audio2mesh", "load_audio2pose", "load_speech_file", "loop_pose_template", "normalize_speech",
           "speech_from_comfy_audio"]
