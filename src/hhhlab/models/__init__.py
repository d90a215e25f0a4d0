"""Model layer: loading (hub, local, embedded default, tiny random, size ladders), scoring, generation."""

from hhhlab.models.load import LoadedModel, load_model, non_embedding_params

__all__ = ["LoadedModel", "load_model", "non_embedding_params"]
