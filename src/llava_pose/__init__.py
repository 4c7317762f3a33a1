"""llava-pose: keypoint-integrated instruction data, fine-tuning and the E-HPAUB benchmark."""

__version__ = "0.1.0"
