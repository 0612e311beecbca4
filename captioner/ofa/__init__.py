"""OFA (Wang et al., ICML 2022) as a captioner: model, tokenizer, checkpoints, beam search.

CLIP-ViP's auxiliary captions come from OFA-Caption (``caption_large_best_clean``) run on each
clip's middle frame. Entry points: ``OFACaptioner.from_dir(path)`` (what ``--captioner
ofa:PATH`` builds), ``random_tiny_captioner()`` (``ofa:random-tiny``), ``convert_fairseq``.
"""

from captioner.ofa.captioner import OFACaptioner, random_tiny_captioner, save_random_tiny
from captioner.ofa.checkpoint import CheckpointMismatch, check_and_load, read_state_dict
from captioner.ofa.config import SIZES, OFAConfig
from captioner.ofa.generate import BeamConfig, beam_search
from captioner.ofa.model import OFAModel

__all__ = [
    "SIZES",
    "BeamConfig",
    "CheckpointMismatch",
    "OFACaptioner",
    "OFAConfig",
    "OFAModel",
    "beam_search",
    "check_and_load",
    "random_tiny_captioner",
    "read_state_dict",
    "save_random_tiny",
]
