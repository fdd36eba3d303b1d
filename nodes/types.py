"""The pack's own socket types (ComfyUI V3 custom io types)."""
from comfy_api.latest import io

# model handles (loader outputs)
Audio2MeshModel = io.Custom("APK_AUDIO2MESH_MODEL")
Audio2PoseModel = io.Custom("APK_AUDIO2POSE_MODEL")
VideoModels = io.Custom("APK_VIDEO_MODELS")
FilmModel = io.Custom("APK_FILM_MODEL")
# data between stages (aniportrait/data.py)
ReferenceFace = io.Custom("APK_REFERENCE_FACE")     # ReferenceFace
MeshSequence = io.Custom("APK_MESH_SEQUENCE")       # MeshSequence
PoseSequence = io.Custom("APK_POSE_SEQUENCE")       # PoseSequence
Landmarks = io.Custom("APK_LANDMARKS")              # LandmarkSequence
FaceTrack = io.Custom("APK_FACE_TRACK")             # FaceTrack
Reference = io.Custom("APK_REFERENCE")              # ReferenceNetEncode output
KeyframePlan = io.Custom("APK_KEYFRAME_PLAN")  # aniportrait/video/frame_interpolation.KeyframePlan
