"""How a population is padded, split over devices and cut into chunks (host side)."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class PopulationLayout:
    """Static shape of a padded population: ``devices * num_chunks * chunk`` candidates.

    Device d trains the contiguous block ``[d * per_device, (d + 1) * per_device)`` as
    ``num_chunks`` chunks of ``chunk`` candidates, so candidate i keeps index i whatever
    the layout.
    """

    devices: int
    num_chunks: int
    chunk: int

    @property
    def per_device(self) -> int:
        return self.num_chunks * self.chunk

    @property
    def size(self) -> int:
        return self.devices * self.per_device


def round_up(n: int, per_octave: int) -> int:
    """Smallest size >= n on the grid ``ceil(2**k * (1 + j / per_octave))``; 0 keeps n."""
    if per_octave == 0 or n <= 1:
        return max(n, 1)
    power = 1
    while power * 2 <= n:
        power *= 2
    for j in range(per_octave + 1):
        size = math.ceil(power * (1 + j / per_octave))
        if size >= n:
            return size
    return power * 2


def population_layout(population: int, chunk: int, devices: int,
                      per_octave: int) -> PopulationLayout:
    """Pads ``population`` to a rounded size that every device splits into whole chunks.

    A device's share that fits one chunk rounds up to a power of two (at most
    ``chunk``); a larger share rounds its number of chunks up to the grid of
    ``per_octave`` sizes per doubling. ``per_octave == 0`` only pads to whole chunks.

    Args:
      population: real candidates P >= 1.
      chunk: the largest chunk a device may train at once.
      devices: devices sharing the population axis.
      per_octave: ``TrainConfig.population_rounding``.
    """
    per_device = -(-population // devices)
    if per_device <= chunk:
        rounded = round_up(per_device, min(per_octave, 1))
        return PopulationLayout(devices, 1, min(rounded, chunk))
    return PopulationLayout(devices, round_up(-(-per_device // chunk), per_octave), chunk)
