"""EfficientViT-SAM and GroundingDINO: pure torch, no IO, no orchestration."""
