"""Registers extension_plugin's space, strategy and dataset through jaxnas's public API;
``jaxnas --import extension_register search ...`` imports it. Tests run in one process
import it only in subprocesses, so the registries of the other tests stay built-in."""

from extension_plugin import blobs, mutate_best, tiny_cells

from jaxnas import data, spaces, strategies

spaces.register("tiny_cells", tiny_cells)
strategies.register("mutate_best", mutate_best)
data.register("blobs", blobs)
