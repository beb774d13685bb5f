"""Images to vectors: the ViT/DINO embedder, model cache, preprocessing and the decode pool (knows no Redis)."""
