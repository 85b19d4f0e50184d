"""EfficientViT-SAM: EfficientViT image encoder + SAM prompt encoder and mask decoder."""
