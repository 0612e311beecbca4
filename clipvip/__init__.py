"""clipvip: data preparation, domain-gap analysis and training for CLIP-ViP video-language models."""

__version__ = "0.1.0"
