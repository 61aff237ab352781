"""Strict numerics for every test."""

import os

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

# Searches in tests leave the user's compilation cache alone; tests of the cache name
# their own directory.
os.environ["JAXNAS_COMPILE_CACHE"] = "off"
