"""Training the paper's CMs: typed experiment configs, data loading, and the resumable trainer.

Training imports ``streamdet`` (models, CM format); ``streamdet`` never imports training.
"""
