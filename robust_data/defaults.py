"""Defaults shared by the core, the assets and the CLI, in a module that imports nothing heavy.

The CLI's argument parser reads them without importing torch.
"""

#: Tries per image in RPR scoring (the paper's cap): a point that survives all of them is robust.
MAX_STEPS = 250
