"""Training side: the DRNN and discriminator, the two-probe simulator, data readers, the GAN schedule.

Importing this package does not import torch; ``training.models`` and the trainer do.
"""
