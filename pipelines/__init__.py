"""Data preparation for CLIP-ViP: manifest -> clip -> middle frame -> caption -> shards.

Stage code lives in plain modules (``record``, ``manifest``, ``stages``, ``tasks``) that never
import an engine; ``pipelines.beam`` and ``pipelines.ray`` only schedule those functions.
"""
