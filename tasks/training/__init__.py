"""Training: fine-tune EfficientViT-SAM, stream SA-1B data, evaluate, decide promotions."""
