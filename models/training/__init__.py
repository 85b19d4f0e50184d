"""Training core of EfficientViT-SAM (pure torch/numpy): the paper's recipe, section 3.2.

Modules:
- `augment`: resize longest side to S, pad to S x S, random horizontal flip (image + masks).
- `prompts`: per mask either its box or 1-10 random foreground points, with equal probability.
- `losses`: focal + dice (20:1) with the min-loss over 3 masks, IoU-head MSE, distillation L2.
- `optim`: AdamW parameter groups (no weight decay on norms and biases), cosine schedule.
- `step`: the forward of a batch of images and their prompts, and one optimiser step with
  gradient accumulation and bf16 autocast.
- `trained_weights`: `save_trained_weights`, the registry-loadable `{"model", "spec", "meta"}` file.
"""
