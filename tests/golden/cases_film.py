"""Golden case ``l_``: FILM frame interpolation (the original's ``-acc``) with the set's TorchScript stand-in
``tiny/film_tiny.pt``. Checked per fi_step stored (arrays ``fi{s}_*``): the model calls each pair of keyframes gets
(which output frames go in as x0 / x1, where the result lands, the exact dt, in order) and the output video, once
with one pair per model call and once with the pairs batched."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from aniportrait.video.frame_interpolation import interpolate, load_film

from .compare import Comparison, compare

STAND_IN = "film_tiny.pt"  # unless the case's args name another file of tiny/
TOL_OUTPUT = 1e-6  # golden README: float32 CPU convolutions
EXACT = 0.0
BATCHED = 4


class CallRecorder(torch.nn.Module):
    """Passes every call to ``model`` and keeps its inputs and clamped result, one row per batch element."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        result = self.model(x0, x1, dt)
        self.calls += list(zip(x0, x1, dt, result.clamp(0, 1)))
        return result


def _position(frame: torch.Tensor, output: np.ndarray) -> int:
    """Which output frame ``frame`` (CHW) is, exactly; -1 if none."""
    matches = np.flatnonzero((output == frame.permute(1, 2, 0).numpy()).all(axis=(1, 2, 3)))
    return int(matches[0]) if len(matches) else -1


def _calls_per_pair(calls, output: np.ndarray, fi_step: int) -> tuple[np.ndarray, np.ndarray]:
    """(pair, x0 position, x1 position, result position) and dt of every call, ordered by pair (stable, so the
    order within a pair is the call order whatever the batching)."""
    rows, dts = [], []
    for x0, x1, dt, result in calls:
        start = _position(x0, output)
        rows.append((start // fi_step, start, _position(x1, output), _position(result, output)))
        dts.append(dt.float().numpy())
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    return np.array([rows[i] for i in order], np.int64).reshape(-1, 4), np.array([dts[i] for i in order])


def check_film(case: str, info: dict, golden: Path) -> list[Comparison]:
    data = np.load(golden / "cases" / info["file"])
    tiny = golden / "tiny"
    stand_in = str(info.get("args", {}).get("model", STAND_IN)).split()[0]
    model = load_film(tiny / stand_in, [tiny])
    keyframes = torch.from_numpy(data["frames"][0]).permute(1, 2, 3, 0)  # [1,3,F,H,W] -> IMAGE [F,H,W,3]
    fi_steps = sorted(int(m.group(1)) for key in data.files if (m := re.fullmatch(r"fi(\d+)_output", key)))
    results = []
    for fi_step in fi_steps:
        expected = data[f"fi{fi_step}_output"][0].transpose(1, 2, 3, 0)
        for batch in (1, BATCHED):
            recorder = CallRecorder(model)
            output = interpolate(recorder, keyframes, fi_step, batch_size=batch).numpy()
            label = f"fi{fi_step} batch {batch}"
            positions, dts = _calls_per_pair(recorder.calls, output, fi_step)
            results += [
                compare(case, f"fi{fi_step}_call_positions", positions, data[f"fi{fi_step}_call_positions"], EXACT,
                        label),
                compare(case, f"fi{fi_step}_call_dt", dts, data[f"fi{fi_step}_call_dt"], EXACT, label),
                compare(case, f"fi{fi_step}_output", output, expected, TOL_OUTPUT, label),
            ]
    if not fi_steps:
        raise ValueError(f"{info['file']} has no fi<step>_output array")
    return results


CASES = {"l_": check_film}
