"""FILM frame interpolation (the original's -acc) without ComfyUI: the insertion schedule, batching, the length rule,
progress/cancel, and the TorchScript-only loader. The golden case l_film checks the numbers against the original."""
from __future__ import annotations

import pickle

import pytest
import torch

from aniportrait.video.frame_interpolation import (KeyframePlan, insertion_schedule, interpolate, load_film,
                                              pad_to_length, select_keyframes)
from aniportrait.tiny_models import write_film_stand_in


class TinyFilm(torch.nn.Module):
    """Non-linear in x0, x1 and dt, so any change of inputs, order or dt changes the result."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(7, 3, 3, padding=1)

    def forward(self, x0, x1, dt):
        plane = dt.reshape(-1, 1, 1, 1).expand(x0.shape[0], 1, *x0.shape[2:])
        return (1 - dt.reshape(-1, 1, 1, 1)) * x0 + torch.tanh(self.conv(torch.cat([x0, x1, plane], 1)))


def _frames(count: int, height: int = 12, width: int = 10) -> torch.Tensor:
    return torch.rand(count, height, width, 3, generator=torch.Generator().manual_seed(count))


@pytest.mark.parametrize("fi_step", range(2, 9))
def test_schedule_makes_each_frame_once_from_its_nearest_known_frames(fi_step):
    known = [0, fi_step]
    schedule = insertion_schedule(fi_step)
    assert sorted(i.target for i in schedule) == list(range(1, fi_step))
    for insertion in schedule:
        assert insertion.target not in known
        below = max(k for k in known if k < insertion.target)
        above = min(k for k in known if k > insertion.target)
        assert (insertion.start, insertion.end) == (below, above)
        relative = (insertion.target - below) / (above - below)
        assert insertion.dt_offset / insertion.dt_span == pytest.approx(relative, abs=1e-6)
        # the original's choice: the missing frame closest to the middle of its bracket (up to float32 rounding)
        candidates = [abs((t - max(k for k in known if k < t)) / (min(k for k in known if k > t)
                                                                   - max(k for k in known if k < t)) - 0.5)
                      for t in range(1, fi_step) if t not in known]
        assert abs(relative - 0.5) <= min(candidates) + 1e-6
        known = sorted(known + [insertion.target])


def test_fi_step_3_makes_the_two_thirds_frame_first_as_float32_linspace_decides():
    # torch.linspace(0, 1, 4) in float32 puts 2/3 one ulp low, so it is (barely) closer to the middle than 1/3
    thirds = torch.linspace(0, 1, 4)
    assert abs(thirds[2] - 0.5) < abs(thirds[1] - 0.5)
    first, second = insertion_schedule(3)
    assert (first.start, first.end, first.target) == (0, 3, 2)
    assert (second.start, second.end, second.target) == (0, 2, 1)
    assert second.dt_offset / second.dt_span != 0.5  # 0.33333334 / 0.66666663, as the original divides


@pytest.mark.parametrize("fi_step", [2, 3, 5])
def test_batching_pairs_gives_the_result_of_one_pair_per_call(fi_step):
    model = TinyFilm().eval()
    keyframes = _frames(7)
    one = interpolate(model, keyframes, fi_step, batch_size=1)
    assert one.shape == ((7 - 1) * fi_step + 1, 12, 10, 3)
    assert torch.equal(one[::fi_step], keyframes)  # the keyframes land at multiples of fi_step, unchanged
    assert 0 <= one.min() and one.max() <= 1  # predictions are clamped
    for batch in (2, 4, 64):
        assert torch.allclose(interpolate(model, keyframes, fi_step, batch_size=batch), one, atol=1e-6), batch


def test_later_frames_are_made_from_earlier_clamped_predictions():
    """Each call of a pair sees the frames the schedule names: inputs, or the clamped results of earlier calls."""
    seen = []

    class Recording(TinyFilm):
        def forward(self, x0, x1, dt):
            seen.append((x0.clone(), x1.clone()))
            return super().forward(x0, x1, dt)

    fi_step = 4
    output = interpolate(Recording().eval(), _frames(2), fi_step, batch_size=1)
    for insertion, (x0, x1) in zip(insertion_schedule(fi_step), seen, strict=True):
        assert torch.equal(x0[0].permute(1, 2, 0), output[insertion.start])
        assert torch.equal(x1[0].permute(1, 2, 0), output[insertion.end])


@pytest.mark.parametrize("fi_step", [1, 2, 3, 4])
def test_length_rule_is_the_originals_and_padding_reaches_every_pose_frame(fi_step):
    for count in range(1, 14):
        keyframes, plan = select_keyframes(_frames(count), fi_step)
        assert plan == KeyframePlan(fi_step, count) and keyframes.shape[0] == plan.keyframes
        assert keyframes.shape[0] == len(range(0, count, fi_step))
        assert 0 <= count - plan.interpolated_frames <= fi_step - 1  # docs/departures.md#b10: up to fi_step-1 short
        short = _frames(plan.interpolated_frames)
        padded = pad_to_length(short, count)
        assert padded.shape[0] == count and torch.equal(padded[:len(short)], short)
        assert all(torch.equal(frame, short[-1]) for frame in padded[len(short):])


def test_progress_counts_every_pair_call_and_cancel_stops_before_the_next_call():
    reports, calls = [], []

    class Counting(TinyFilm):
        def forward(self, x0, x1, dt):
            calls.append(x0.shape[0])
            return super().forward(x0, x1, dt)

    interpolate(Counting().eval(), _frames(6), 3, batch_size=2, progress=lambda done, total: reports.append(
        (done, total)))
    assert reports[-1] == (5 * 2, 5 * 2) and [d for d, _ in reports] == sorted(d for d, _ in reports)
    assert sum(calls) == 5 * 2

    class Cancelled(Exception):
        pass

    calls.clear()

    def cancel_after_first_call():
        if calls:
            raise Cancelled

    with pytest.raises(Cancelled):
        interpolate(Counting().eval(), _frames(6), 3, batch_size=2, check_interrupt=cancel_after_first_call)
    assert len(calls) == 1


class _CreatesFileWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_loader_takes_torchscript_from_the_models_folder_only(tmp_path):
    models, elsewhere = tmp_path / "models", tmp_path / "elsewhere"
    models.mkdir()
    elsewhere.mkdir()
    inside = write_film_stand_in(models / "film_net_fp16.pt")
    frames = torch.rand(2, 3, 4, 4)
    assert torch.equal(load_film(inside, [models])(frames[:1], frames[1:], torch.full((1, 1), 0.0)), frames[:1])

    outside = write_film_stand_in(elsewhere / "film_net_fp16.pt")
    for path in (outside, models / ".." / "elsewhere" / "film_net_fp16.pt"):
        with pytest.raises(ValueError, match="only loaded from the models folder"):
            load_film(path, [models])
    (models / "linked.pt").symlink_to(outside)  # a link the user put into the models folder is their choice
    load_film(models / "linked.pt", [models])

    marker = tmp_path / "code_ran"
    for name, payload in (("zip_pickle.pt", None), ("plain_pickle.pt", pickle.dumps(
            {"trap": _CreatesFileWhenUnpickled(marker)}, protocol=2))):
        path = models / name
        if payload is None:
            torch.save({"weight": torch.ones(1), "trap": _CreatesFileWhenUnpickled(marker)}, path)
        else:
            path.write_bytes(payload)
        with pytest.raises(ValueError, match="not a TorchScript archive") as error:
            load_film(path, [models])
        assert str(path) in str(error.value) and "never loaded" in str(error.value)
    assert not marker.exists(), "a pickle was unpickled"
