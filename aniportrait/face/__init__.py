"""Face analysis: MediaPipe FaceLandmarker, the face-geometry port, cropping and per-frame tracking."""
