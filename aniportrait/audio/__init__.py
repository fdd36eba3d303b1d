"""Speech -> face motion: Audio2Mesh (lip-sync vertex offsets), Audio2Pose (head pose) and their input/output
handling (docs/pipeline.md)."""
