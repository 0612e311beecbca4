"""Any Hugging Face image-to-text model (VisionEncoderDecoder, BLIP, GIT) from a local folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from captioner.base import Captioner, clean_caption
from captioner.precision import autocast, autocast_dtype


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class HFCaptioner(Captioner):
    """Beam-search captions from a ``transformers`` image-to-text model.

    Images are processed one by one by the model's own image processor (fixed size, so batching
    adds no padding), then generated in one batch: autocast on GPU (bf16 where the GPU has it
    natively, else fp16: ``captioner.precision``), float32 on CPU.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        image_processor,
        tokenizer,
        name: str,
        max_words: int = 16,
        num_beams: int = 5,
        device: str | None = None,
        precision: str = "auto",
    ) -> None:
        self.device = pick_device(device)
        self.amp_dtype = autocast_dtype(self.device, precision)  # None: float32
        self.model = model.to(self.device).eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.name = name
        self.max_words = max_words
        self.num_beams = num_beams

    @classmethod
    def from_dir(
        cls, path: str, max_words: int = 16, device: str | None = None, precision: str = "auto"
    ) -> HFCaptioner:
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"captioner folder {path!r} has no config.json: give a local Hugging Face "
                "image-to-text model (saved with save_pretrained)"
            )
        model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        name = f"hf:{folder.name}"
        return cls(
            model, image_processor, tokenizer, name, max_words, device=device, precision=precision
        )

    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        if not images:
            return []
        pixels = self.image_processor([im.convert("RGB") for im in images], return_tensors="pt")
        pixel_values = pixels["pixel_values"].to(self.device)
        with autocast(self.device, self.amp_dtype):
            tokens = self.model.generate(
                pixel_values=pixel_values,
                num_beams=self.num_beams,
                no_repeat_ngram_size=3,
                max_new_tokens=self.max_words * 2 + 4,
                do_sample=False,
            )
        texts = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        return [clean_caption(t, self.max_words) for t in texts]
