"""The original's ``-acc`` speed-up (docs/pipeline.md#frame-interpolation): diffuse every ``fi_step``-th pose frame,
then fill the frames between with FILM (``film_net_fp16.pt``, a TorchScript export).

Faithful to ``src/utils/frame_interpolation.py``: for each pair of neighbouring generated frames the
``fi_step - 1`` frames between are made one at a time, each from the two nearest known frames (inputs or earlier
clamped predictions) with the relative time ``dt`` the original computes. The order and the ``dt`` values come
from the original's float32 ``torch.linspace`` arithmetic, whose rounding decides near-ties (for fi_step 3 the
2/3 frame comes first, golden case ``l_film``). Every pair follows the same schedule, so the pairs are batched:
one model call makes the same insertion for many pairs.

Output length (docs/departures.md#b10): ``(n - 1) * fi_step + 1`` frames from ``n`` keyframes, up to ``fi_step - 1``
fewer than the pose frames; ``pad_to_length`` holds the last frame to make up the difference.
"""
from __future__ import annotations

import math
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from ..progress import InterruptCheck, ProgressFn


@dataclass(frozen=True)
class KeyframePlan:
    """Which pose frames were diffused: every ``fi_step``-th of ``source_frames``."""

    fi_step: int
    source_frames: int

    @property
    def keyframes(self) -> int:
        return math.ceil(self.source_frames / self.fi_step)

    @property
    def interpolated_frames(self) -> int:
        """The original's output length: (keyframes - 1) * fi_step + 1."""
        return (self.keyframes - 1) * self.fi_step + 1


def select_keyframes(frames: torch.Tensor, fi_step: int) -> tuple[torch.Tensor, KeyframePlan]:
    """``frames[::fi_step]`` (the original's ``pose_images[:L:fi_step]``) and the plan that undoes it."""
    if fi_step < 1:
        raise ValueError(f"fi_step must be at least 1, got {fi_step}.")
    return frames[::fi_step], KeyframePlan(fi_step, frames.shape[0])


@dataclass(frozen=True)
class Insertion:
    """One model call within a pair: positions 0..fi_step inside the pair (0 and fi_step are the inputs)."""

    start: int
    end: int
    target: int
    dt_offset: float  # float32 values of the original's splits[target] - splits[start] ...
    dt_span: float    # ... and splits[end] - splits[start]; dt = offset / span in the model's dtype


def insertion_schedule(fi_step: int) -> list[Insertion]:
    """The original's order: repeatedly the missing frame whose relative position inside its bracketing known
    pair is closest to 1/2 (first minimum, pair-major), with float32 ``linspace`` times."""
    splits = torch.linspace(0, 1, fi_step + 1)  # float32 on purpose: its rounding decides the ties
    known, missing = [0, fi_step], list(range(1, fi_step))
    schedule = []
    while missing:
        starts, ends = splits[known[:-1]], splits[known[1:]]
        distance = ((splits[None, missing] - starts[:, None]) / (ends[:, None] - starts[:, None]) - 0.5).abs()
        pair, which = divmod(int(torch.argmin(distance)), len(missing))
        start, end, target = known[pair], known[pair + 1], missing.pop(which)
        schedule.append(Insertion(start, end, target, float(splits[target] - splits[start]),
                                  float(splits[end] - splits[start])))
        known.insert(pair + 1, target)
    return schedule


def interpolate(model: torch.nn.Module, keyframes: torch.Tensor, fi_step: int, batch_size: int = 4,
                device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                progress: ProgressFn | None = None, check_interrupt: InterruptCheck | None = None) -> torch.Tensor:
    """IMAGE keyframes ``[n, H, W, 3]`` in [0, 1] -> ``[(n - 1) * fi_step + 1, H, W, 3]`` float32 on the CPU.

    ``model(x0, x1, dt)`` takes ``[B, 3, H, W]`` frames and ``dt`` ``[B, 1]`` in its own dtype (``dtype``,
    default: its parameters'); ``batch_size`` pairs go through one call. ``progress`` counts model calls per pair.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    parameter = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (parameter.device if parameter is not None else "cpu")
    dtype = dtype or (parameter.dtype if parameter is not None else torch.float32)
    count, height, width, _ = keyframes.shape
    output = torch.empty(((count - 1) * fi_step + 1, height, width, 3), dtype=torch.float32)
    output[::fi_step] = keyframes.float().cpu()
    schedule = insertion_schedule(fi_step)
    pairs, done = count - 1, 0
    for first in range(0, pairs, batch_size):
        last = min(first + batch_size, pairs)
        # contiguous channels-first on the device, in the model's dtype, as the original casts each input
        known = {0: keyframes[first:last], fi_step: keyframes[first + 1:last + 1]}
        known = {pos: frames.to(device=device, dtype=dtype).permute(0, 3, 1, 2).contiguous()
                 for pos, frames in known.items()}
        for insertion in schedule:
            if check_interrupt:
                check_interrupt()
            x0 = known[insertion.start]
            dt = x0.new_full((x0.shape[0], 1), insertion.dt_offset) / torch.tensor(insertion.dt_span,
                                                                                    dtype=torch.float32)
            with torch.no_grad():
                known[insertion.target] = model(x0, known[insertion.end], dt).clamp(0, 1)
            output[first * fi_step + insertion.target:last * fi_step:fi_step] = \
                known[insertion.target].permute(0, 2, 3, 1).float().cpu()
            done += last - first
            if progress:
                progress(done, pairs * len(schedule))
    return output


def pad_to_length(frames: torch.Tensor, length: int) -> torch.Tensor:
    """``frames`` made ``length`` long by holding the last frame (never shortened)."""
    missing = length - frames.shape[0]
    if missing <= 0:
        return frames
    return torch.cat([frames, frames[-1:].expand(missing, *frames.shape[1:])])


def load_film(path: Path | str, models_folders: Iterable[Path | str]) -> torch.nn.Module:
    """FILM from a TorchScript archive inside one of ``models_folders``, on the CPU, in eval mode.

    TorchScript files carry code, so only the models folder is trusted (a link placed there counts as the user's
    choice); anything that is not a TorchScript archive (e.g. a pickled checkpoint, which would have to be
    unpickled) is refused before it is opened.
    """
    path = Path(os.path.abspath(path))
    folders = [Path(os.path.abspath(folder)) for folder in models_folders]
    if not any(folder in path.parents for folder in folders):
        raise ValueError(f"AniPortrait: refusing to load the TorchScript file {path}: FILM models are only loaded "
                         f"from the models folder ({', '.join(map(str, folders))}). Move the file there.")
    if not _is_torchscript_archive(path):
        raise ValueError(f"AniPortrait: {path} is not a TorchScript archive (a FILM export such as "
                         "film_net_fp16.pt). Pickled checkpoints are never loaded this way; download the released "
                         "film_net_fp16.pt (python scripts/download_models.py --only film).")
    with warnings.catch_warnings():  # recent torch deprecates TorchScript, the only format FILM was released in
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def _is_torchscript_archive(path: Path) -> bool:
    """A TorchScript archive is a zip with a ``code/`` folder next to its ``data.pkl``; torch.save's is not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())
