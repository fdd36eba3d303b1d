"""One DDIM step over overlapping context windows, holding only the frames still waiting for a window.

The original adds every window's noise prediction into a whole-video accumulator, then averages, guides and steps
all frames at once: several tensors of (CFG rows x frames) latents per step, which at 512² in float32 is 0.5 MB per
frame and grows with the video. Here a frame is blended and stepped (in place, in the latents) as soon as the last
window that covers it has been added, so the only whole-video tensor is the latents themselves. Every operation is
element-wise per frame, so the numbers are those of the whole-video arithmetic, bit for bit; and a window never
reads a frame that is already stepped, because that frame's windows have all been added.
"""
from __future__ import annotations

import torch

from .scheduler import DDIMScheduler


class WindowBlend:
    """Blends the windows' predictions of one step into ``latents`` (1, 4, F, h, w), updated in place.

    ``coverage[f]`` is the number of windows that contain frame f. ``average``: divide by it (else the sums are
    used, the original at cfg <= 1). ``guidance`` > 1 with two prediction rows (unconditional, conditional).
    ``preview_clean`` holds the predicted clean latents x0 (1, 4, 1, h, w) of ``preview_frame`` from its latest
    step (for previews while sampling).
    """

    def __init__(self, latents: torch.Tensor, coverage: list[int], average: bool, guided: bool, guidance: float,
                 scheduler: DDIMScheduler, preview_frame: int = 0) -> None:
        self.latents = latents
        self.coverage = coverage
        self.average, self.guided, self.guidance = average, guided, guidance
        self.scheduler = scheduler
        self.timestep = 0
        self.remaining: list[int] = []
        self.pending: dict[int, torch.Tensor] = {}
        self.preview_frame = preview_frame
        self.preview_clean: torch.Tensor | None = None

    def start_step(self, timestep: int) -> None:
        if self.pending:
            raise RuntimeError(f"frames {sorted(self.pending)} were never completed in the last step")
        self.timestep = timestep
        self.remaining = list(self.coverage)

    def add(self, window: list[int], prediction: torch.Tensor) -> None:
        """``prediction`` (rows, 4, len(window), h, w): one window's noise prediction, its frames in window order."""
        completed = []
        for position, frame in enumerate(window):
            total = self.pending.get(frame)
            if total is None:
                # a zero start, as the original's accumulator: 0 + x keeps the sign of zero the same way
                total = self.pending[frame] = torch.zeros_like(prediction[:, :, position])
            total += prediction[:, :, position]
            self.remaining[frame] -= 1
            if self.remaining[frame] == 0:
                completed.append(frame)
        if completed:
            self._step(completed)

    @property
    def pending_frames(self) -> int:
        """Frames holding an accumulator now (bounded by the windows in flight, not by the video length)."""
        return len(self.pending)

    def _step(self, frames: list[int]) -> None:
        noise = torch.stack([self.pending.pop(frame) for frame in frames], dim=2)
        if self.average:
            counts = torch.tensor([self.coverage[frame] for frame in frames], dtype=noise.dtype, device=noise.device)
            noise = noise / counts.view(1, 1, -1, 1, 1)
        if self.guided:
            uncond, cond = noise.chunk(2)
            noise = uncond + self.guidance * (cond - uncond)
        index = torch.tensor(frames, dtype=torch.int64, device=self.latents.device)
        stepped, clean = self.scheduler.step(noise, self.timestep, self.latents.index_select(2, index))
        self.latents.index_copy_(2, index, stepped)
        if self.preview_frame in frames:
            position = frames.index(self.preview_frame)
            self.preview_clean = clean[:, :, position:position + 1]
