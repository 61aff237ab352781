"""jaxnas: functional neural architecture search in JAX."""
